using System.CommandLine;
using SpecDecode.CommandLine;
using SpecDecode.Train.Commands;

// SpecDecode.Train: builds the embedded default model pair (models/default and models/default-draft) from the SWE-bench
// trajectories in ../shared/data/swebench; the last 50 trajectories are held out for evaluation. The steps, in order:
//   tokenizer  - the byte-level BPE tokenizer files
//   train      - one model (--shape target or draft) with checkpoints and resume; exports a Hugging Face folder
//   plot       - the loss curves as a PNG from the loss logs
//   evaluate   - acceptance of suffix, draft-model and hybrid drafting with the trained pair on the held-out trajectories
// docs/default-model.md has the commands that made the committed models.
var root = new RootCommand("Train the embedded default model pair on the SWE-bench trajectories.")
{
    TokenizerCommand.Build(),
    TrainCommand.Build(),
    PlotCommand.Build(),
    EvaluateCommand.Build(),
};
return ToolRunner.Run(root, args);
