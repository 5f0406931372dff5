namespace SpecDecode.Fleet;

/// <summary>The most recent message ids seen, bounded (oldest forgotten first); thread-safe.</summary>
internal sealed class MessageIdWindow(int capacity)
{
    private readonly HashSet<Guid> _ids = new(Math.Min(capacity, 1 << 16));
    private readonly Queue<Guid> _order = new();
    private readonly Lock _gate = new();

    /// <summary>Adds the id; false when it was already there.</summary>
    public bool Add(Guid id)
    {
        lock (_gate)
        {
            if (!_ids.Add(id))
            {
                return false;
            }
            _order.Enqueue(id);
            if (_order.Count > capacity)
            {
                _ids.Remove(_order.Dequeue());
            }
            return true;
        }
    }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _ids.Count;
            }
        }
    }
}
