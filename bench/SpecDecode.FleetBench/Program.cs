using System.CommandLine;
using SpecDecode.CommandLine;
using SpecDecode.FleetBench;

// The tools' convention (README, "Command-line tools"): bad values are one line on stderr naming the option, exit 2.
var first = ToolOptions.Int("--first", "Publish the responses of the first N trajectories of the trace.", 499, 1);
var latency = ToolOptions.Int("--latency-messages", "Messages sent one at a time, 2 ms apart, for the publish-to-ingest latency.", 2000, 1);
var broker = ToolOptions.Choice("--broker", "Measure one broker only (default: both).", null, ["nats", "redis"]);
var root = new RootCommand("Measures NATS JetStream and Redis Streams for sharing finished responses between replicas (docs/fleet.md, the broker choice).")
{
    first, latency, broker,
};
root.SetAction(async (p, _) =>
{
    await BrokerComparison.RunAsync(p.GetValue(first), p.GetValue(latency), p.GetValue(broker)).ConfigureAwait(false);
    return ToolExitCodes.Ok;
});
return await ToolRunner.RunAsync(root, args);
