using System.CommandLine;
using SpecDecode.Soak;

var clients = new Option<int>("--clients") { Description = "Concurrent clients.", DefaultValueFactory = _ => 64 };
var rounds = new Option<int>("--rounds") { Description = "Rounds; memory is measured after each.", DefaultValueFactory = _ => 8 };
var requests = new Option<int>("--requests") { Description = "Requests per client per round.", DefaultValueFactory = _ => 4 };
var batch = new Option<int>("--batch") { Description = "Requests the engine serves at once.", DefaultValueFactory = _ => 8 };
var disposeEvery = new Option<int>("--dispose-every") { Description = "Dispose the engine during every Nth round and create another on the same model (0: never).", DefaultValueFactory = _ => 3 };
var seed = new Option<int>("--seed") { Description = "Seeds the workload and the faults.", DefaultValueFactory = _ => 16 };
var model = new Option<string?>("--model") { Description = "A checkpoint folder; default: the repository's models/default." };
var quick = new Option<bool>("--quick") { Description = "The CI slice: 8 clients x 3 rounds x 2 requests." };
var root = new RootCommand("Soak and fault-injection run of the speculative engine on the CPU; exit code 1 when a check fails.")
{
    clients, rounds, requests, batch, disposeEvery, seed, model, quick,
};
root.SetAction(p =>
{
    SoakSettings settings = p.GetValue(quick)
        ? SoakSettings.Quick with { Seed = p.GetValue(seed), ModelFolder = p.GetValue(model) }
        : new SoakSettings
        {
            Clients = p.GetValue(clients),
            Rounds = p.GetValue(rounds),
            RequestsPerClient = p.GetValue(requests),
            MaxBatch = p.GetValue(batch),
            DisposeEveryRounds = p.GetValue(disposeEvery),
            Seed = p.GetValue(seed),
            ModelFolder = p.GetValue(model),
        };
    SoakReport report = SoakRunner.Run(settings, Console.Out);
    Console.WriteLine(report);
    return report.Passed ? 0 : 1;
});
return root.Parse(args).Invoke();
