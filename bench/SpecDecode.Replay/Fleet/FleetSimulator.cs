using System.Diagnostics;
using SpecDecode.Suffix;

namespace SpecDecode.Replay;

/// <summary>
/// Simulates a fleet of server replicas behind a conversation-affine router, model-free: each replica drafts with its
/// own suffix drafter and verifies greedily against the recorded responses, as <see cref="ReplayDriver"/> does for one
/// process; in <see cref="FleetMode.Shared"/> every finished response is also added to every other replica's global tree
/// after a delay.
/// </summary>
/// <remarks>
/// <para><b>Schedule.</b> The fleet has <c>replicas × agents per replica</c> slots; slot i belongs to replica
/// <c>i mod replicas</c>, so the first trajectories go round-robin over the replicas. Each slot takes the next trajectory
/// in file order when its current one ends and runs its calls one after the other (the router keeps a conversation on
/// its replica). Simulated time advances by response tokens: a call lasts <c>response tokens × token_ms</c>, and the step
/// that starts with <c>e</c> of its tokens emitted happens at <c>start + e × token_ms</c>. Call starts and ends, and so
/// when each replica could know what, are the same in every mode and for every drafter; only what a step drafts
/// differs. Events at one time run in slot order (deliveries first).</para>
/// <para><b>Sharing.</b> A finished response is delivered (<see cref="SuffixDecodingCache.AddResponse"/>) to every other
/// replica once both delays have passed: <see cref="FleetSettings.DelayCalls"/> more finished calls fleet-wide and
/// <see cref="FleetSettings.DelaySeconds"/> simulated seconds. With one replica and one agent the simulation is the plain
/// replay of <see cref="ReplayDriver"/>, call for call.</para>
/// </remarks>
public static class FleetSimulator
{
    /// <summary>Runs one configuration over <paramref name="trajectories"/> (held in memory: read the trace once for many runs).</summary>
    /// <param name="trajectories">Trajectories in file order.</param>
    /// <param name="settings">The configuration.</param>
    /// <param name="callCompleted">Invoked after each call (for progress); may be null.</param>
    /// <exception cref="ArgumentException">The settings are invalid (<see cref="FleetSettings.Validate"/> says why).</exception>
    /// <exception cref="ReplayException">A drafter failed or proposed more than the budget.</exception>
    public static FleetResult Run(IReadOnlyList<TraceTrajectory> trajectories, FleetSettings settings, Action? callCompleted = null)
    {
        ArgumentNullException.ThrowIfNull(trajectories);
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.Validate() is { } error)
        {
            throw new ArgumentException(error, nameof(settings));
        }
        var run = new Simulation(trajectories, settings, callCompleted);
        try
        {
            return run.Execute();
        }
        finally
        {
            run.Dispose();
        }
    }

    private sealed class Simulation : IDisposable
    {
        private readonly IReadOnlyList<TraceTrajectory> _trajectories;
        private readonly FleetSettings _settings;
        private readonly Action? _callCompleted;
        private readonly SuffixDrafter[] _drafters;
        private readonly Slot[] _slots;
        private readonly PriorityQueue<int, (double Time, int Slot)> _events = new();
        private readonly Queue<Delivery> _inFlight = new();
        private readonly SpeculationMetrics _metrics = new();
        private readonly long[] _calls, _steps, _tokens;
        private readonly double _tokenSeconds;
        private int _nextTrajectory;
        private long _nextRequest = 1, _finished, _deliveredResponses, _deliveredTokens, _callCount, _responseTokens;
        private double _lastEnd;

        public Simulation(IReadOnlyList<TraceTrajectory> trajectories, FleetSettings settings, Action? callCompleted)
        {
            _trajectories = trajectories;
            _settings = settings;
            _callCompleted = callCompleted;
            _tokenSeconds = settings.TokenMilliseconds / 1000.0;
            int replicas = settings.Replicas;
            int slots = replicas * settings.AgentsPerReplica;
            // A drafter keeps a conversation's tree between its calls; twice the slots it serves is plenty (ended
            // trajectories never come back, so a larger cache only holds dead trees).
            int servedSlots = settings.Mode == FleetMode.Pooled ? slots : settings.AgentsPerReplica;
            DrafterSettings drafterSettings = settings.DrafterSettings with
            {
                MaxCachedConversations = Math.Min(settings.DrafterSettings.MaxCachedConversations, Math.Max(8, 2 * servedSlots)),
            };
            _drafters = new SuffixDrafter[settings.Mode == FleetMode.Pooled ? 1 : replicas];
            for (int i = 0; i < _drafters.Length; i++)
            {
                _drafters[i] = (SuffixDrafter)DrafterFactory.Create(settings.Drafter, drafterSettings).Drafter;
            }
            _slots = new Slot[slots];
            _calls = new long[replicas];
            _steps = new long[replicas];
            _tokens = new long[replicas];
        }

        public FleetResult Execute()
        {
            long wallStart = Stopwatch.GetTimestamp();
            for (int i = 0; i < _slots.Length; i++)
            {
                _slots[i] = new Slot(i % _settings.Replicas);
                TakeNextTrajectory(i, 0);
            }
            while (_events.TryDequeue(out int slot, out (double Time, int Slot) key))
            {
                DeliverDue(key.Time);
                Step(slot, key.Time);
            }
            long wallTicks = Stopwatch.GetTimestamp() - wallStart;

            var replicas = new FleetReplicaResult[_settings.Replicas];
            for (int r = 0; r < replicas.Length; r++)
            {
                long cached = DrafterOf(r).Cache.GetStatistics().CachedResponseTokens;
                replicas[r] = new FleetReplicaResult(_calls[r], _steps[r], _tokens[r], cached);
            }
            return new FleetResult
            {
                Settings = _settings,
                Trajectories = _trajectories.Count,
                Calls = _callCount,
                ResponseTokens = _responseTokens,
                Steps = _metrics.Steps,
                Drafts = _metrics.Drafts,
                DraftedTokens = _metrics.DraftTokens,
                AcceptedTokens = _metrics.AcceptedTokens,
                DeliveredResponses = _deliveredResponses,
                DeliveredTokens = _deliveredTokens,
                UndeliveredResponses = _inFlight.Count,
                Replicas = replicas,
                SimulatedSeconds = _lastEnd,
                WallSeconds = (double)wallTicks / Stopwatch.Frequency,
                DrafterMemoryBytes = _drafters.Sum(d => d.EstimateMemoryBytes()),
            };
        }

        private SuffixDrafter DrafterOf(int replica) => _drafters[_settings.Mode == FleetMode.Pooled ? 0 : replica];

        private void TakeNextTrajectory(int slot, double time)
        {
            if (_nextTrajectory >= _trajectories.Count)
            {
                return;
            }
            Slot s = _slots[slot];
            s.Trajectory = _trajectories[_nextTrajectory++];
            s.CallIndex = 0;
            StartCall(slot, time);
        }

        private void StartCall(int slot, double time)
        {
            Slot s = _slots[slot];
            s.Started = false;
            s.Emitted = 0;
            s.Start = time;
            _events.Enqueue(slot, (time, slot));
        }

        private void Step(int slot, double now)
        {
            Slot s = _slots[slot];
            TraceTrajectory trajectory = s.Trajectory!;
            TraceCall call = trajectory.Calls[s.CallIndex];
            SuffixDrafter drafter = DrafterOf(s.Replica);
            try
            {
                if (!s.Started)
                {
                    _settings.OnCallStart?.Invoke(new FleetCallStart(s.Replica, trajectory.TaskId, call.Index, drafter.Cache));
                    s.Request = new RequestId(_nextRequest++);
                    drafter.StartRequest(s.Request, call.Prompt.Span, new DraftRequestOptions { ConversationId = trajectory.TaskId });
                    s.Started = true;
                }
                ReadOnlySpan<int> remaining = call.Response.Span[s.Emitted..];
                GreedyStep step = ReplayDriver.ProposeAndAccept(drafter, s.Request, remaining, _settings.Budget);
                int emitted = step.Emitted;
                drafter.Observe(s.Request, remaining[..emitted]);
                _metrics.RecordStep(step.Draft.Count, step.Accepted, emitted, TimeSpan.Zero);
                _steps[s.Replica]++;
                _tokens[s.Replica] += emitted;
                s.Emitted += emitted;
                if (s.Emitted < call.ResponseLength)
                {
                    _events.Enqueue(slot, (s.Start + s.Emitted * _tokenSeconds, slot));
                    return;
                }
                drafter.EndRequest(s.Request);
            }
            catch (Exception ex) when (ex is not ReplayException)
            {
                throw new ReplayException(
                    $"Drafter '{drafter.Name}' failed on {trajectory.TaskId} (line {trajectory.LineNumber}) call {call.Index} on replica {s.Replica}: {ex.Message}", ex);
            }
            FinishCall(slot, call);
        }

        private void FinishCall(int slot, TraceCall call)
        {
            Slot s = _slots[slot];
            double end = s.Start + call.ResponseLength * _tokenSeconds;
            _lastEnd = Math.Max(_lastEnd, end);
            _finished++;
            _callCount++;
            _calls[s.Replica]++;
            _responseTokens += call.ResponseLength;
            if (_settings.Mode == FleetMode.Shared && _settings.Replicas > 1)
            {
                _inFlight.Enqueue(new Delivery(call.Response, s.Replica, end + _settings.DelaySeconds, _finished + _settings.DelayCalls));
            }
            _callCompleted?.Invoke();
            // Deliveries due at once (no delay) reach the others before any later event.
            DeliverDue(end);
            s.CallIndex++;
            double next = end + _settings.GapSeconds;
            if (s.CallIndex < s.Trajectory!.Calls.Length)
            {
                StartCall(slot, next);
            }
            else
            {
                TakeNextTrajectory(slot, next);
            }
        }

        /// <summary>Delivers, oldest first, every response whose delays have both passed by <paramref name="now"/>.</summary>
        private void DeliverDue(double now)
        {
            while (_inFlight.TryPeek(out Delivery d) && d.DueTime <= now && d.DueFinished <= _finished)
            {
                _inFlight.Dequeue();
                ReadOnlySpan<int> tokens = d.Tokens.Span;
                for (int r = 0; r < _drafters.Length; r++)
                {
                    if (r != d.Origin && _drafters[r].Cache.AddResponse(tokens))
                    {
                        _deliveredResponses++;
                        _deliveredTokens += tokens.Length;
                    }
                }
            }
        }

        public void Dispose()
        {
            foreach (SuffixDrafter d in _drafters)
            {
                d?.Dispose();
            }
        }
    }

    private sealed class Slot(int replica)
    {
        public readonly int Replica = replica;
        public TraceTrajectory? Trajectory;
        public int CallIndex;
        public bool Started;
        public int Emitted;
        public double Start;
        public RequestId Request;
    }

    private readonly record struct Delivery(ReadOnlyMemory<int> Tokens, int Origin, double DueTime, long DueFinished);
}
