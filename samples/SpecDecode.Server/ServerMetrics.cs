using System.Diagnostics.Metrics;

namespace SpecDecode.Server;

/// <summary>
/// The server's own instruments on the meter <c>SpecDecode.Server</c>, beside the engine's (meter <c>SpecDecode</c>;
/// docs/engine.md), named after vLLM's serving metrics: running and waiting requests, prompt tokens, end-to-end latency
/// and time to first token. /metrics exports both meters in Prometheus format (docs/server.md has the names).
/// </summary>
public sealed class ServerMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "SpecDecode.Server";

    private readonly Meter _meter = new(MeterName, typeof(ServerMetrics).Assembly.GetName().Version?.ToString());
    private readonly Counter<long> _promptTokens;
    private readonly Histogram<double> _latency;
    private readonly Histogram<double> _firstToken;

    /// <summary>Creates the instruments; the gauges read <paramref name="host"/>'s engine.</summary>
    public ServerMetrics(ModelHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        _meter.CreateObservableGauge("specdecode.num_requests_running", () => host.Engine.Statistics.Active, "{request}",
            "Requests decoding now (vLLM num_requests_running).");
        _meter.CreateObservableGauge("specdecode.num_requests_waiting", () => host.Engine.Statistics.Waiting, "{request}",
            "Requests waiting for a KV-cache slot (vLLM num_requests_waiting).");
        _promptTokens = _meter.CreateCounter<long>("specdecode.prompt_tokens", "{token}", "Prompt tokens of finished requests (vLLM prompt_tokens).");
        _latency = _meter.CreateHistogram<double>("specdecode.e2e_request_latency", "s", "Time from receiving a request to its last token (vLLM e2e_request_latency).");
        _firstToken = _meter.CreateHistogram<double>("specdecode.time_to_first_token", "s", "Time from receiving a streamed request to its first chunk (vLLM time_to_first_token).");
    }

    /// <summary>Records a finished request.</summary>
    public void Finished(GenerationStatistics statistics, TimeSpan latency)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        _promptTokens.Add(statistics.PromptTokens);
        _latency.Record(latency.TotalSeconds);
    }

    /// <summary>Records a streamed request's first chunk.</summary>
    public void FirstToken(TimeSpan elapsed) => _firstToken.Record(elapsed.TotalSeconds);

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
