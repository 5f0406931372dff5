namespace SpecDecode;

/// <summary>
/// How the target model's next-token distribution is formed from its logits when drafts are verified by sampling:
/// temperature, then top-k, then top-p, as Hugging Face transformers' <c>TemperatureLogitsWarper</c>,
/// <c>TopKLogitsWarper</c> and <c>TopPLogitsWarper</c> apply them.
/// </summary>
/// <remarks>
/// Every setter validates its value, so an instance never holds an out-of-range setting. The defaults (temperature 1,
/// no top-k, no top-p, no seed) sample from the untouched softmax of the logits.
/// </remarks>
public sealed class SamplingOptions
{
    /// <summary>Temperatures above 0 but below this (1e-5) decode greedily, as in vLLM: dividing the logits by a tinier
    /// temperature overflows float32 (at 1e-38 the probabilities became NaN), and the distribution is the argmax's point
    /// mass at that scale anyway.</summary>
    public const float MinTemperature = 1e-5f;

    private float _temperature = 1f;
    private int _topK;
    private float _topP = 1f;

    /// <summary>
    /// Divides the logits before the softmax; 0 means greedy decoding (the argmax, ties to the lowest token id), and so
    /// does any value below <see cref="MinTemperature"/>. Must be finite and &gt;= 0. Default 1.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative, NaN or infinite.</exception>
    public float Temperature
    {
        get => _temperature;
        set
        {
            if (!(value >= 0f) || float.IsPositiveInfinity(value))
            {
                throw new ArgumentOutOfRangeException(nameof(Temperature), value,
                    "Temperature must be a finite number >= 0 (0 means greedy argmax).");
            }
            _temperature = value;
        }
    }

    /// <summary>
    /// Keeps only the <c>TopK</c> highest logits (ties with the k-th value are kept too, as in transformers); 0 turns
    /// top-k off. Must be &gt;= 0; values above the vocabulary size keep everything. Default 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public int TopK
    {
        get => _topK;
        set
        {
            if (value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(TopK), value, "TopK must be >= 0 (0 turns top-k off).");
            }
            _topK = value;
        }
    }

    /// <summary>
    /// Nucleus sampling: keeps the most probable tokens whose cumulative probability (sorted descending) reaches
    /// <c>TopP</c>, always at least one; 1 turns top-p off. Must lie in (0, 1]. Default 1.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is not in (0, 1].</exception>
    public float TopP
    {
        get => _topP;
        set
        {
            if (!(value > 0f && value <= 1f))
            {
                throw new ArgumentOutOfRangeException(nameof(TopP), value, "TopP must lie in (0, 1] (1 turns top-p off).");
            }
            _topP = value;
        }
    }

    /// <summary>
    /// Seeds this options object's random stream (drawn on the host), so that the same inputs and the same drafts give
    /// the same tokens whatever other sequences share the batch; <c>null</c> (the default) seeds the stream from the
    /// operating system. An engine copies a request's options, so each request has a stream of its own.
    /// </summary>
    public long? Seed { get; set; }

    /// <summary>True when <see cref="Temperature"/> is below <see cref="MinTemperature"/> (0 included): the target
    /// distribution is the point mass on the argmax.</summary>
    public bool IsGreedy => _temperature < MinTemperature;
}
