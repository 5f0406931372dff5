using BenchmarkDotNet.Running;

// Hot paths of the suffix drafter on real SWE-bench trace data (see bench/RESULTS.md for the figures and commands).
// Run: dotnet run -c Release --project bench/SpecDecode.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(SpecDecode.Benchmarks.TraceData).Assembly).Run(args);
