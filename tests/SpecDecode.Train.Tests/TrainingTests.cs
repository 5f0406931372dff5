using Microsoft.ML.Tokenizers;
using SpecDecode.Train.Checkpoint;
using SpecDecode.Train.Data;
using SpecDecode.Train.Model;
using SpecDecode.Train.Tokenizer;
using SpecDecode.Train.Training;
using SpecDecode.Tree;
using SpecDecode.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Train.Tests;

/// <summary>The training loop on the CPU with a test-sized model: the module is the checkpoint format the loaders read,
/// it learns, and a paused and resumed run is the same run.</summary>
public sealed class TrainingTests : IDisposable
{
    private static readonly string[] Specials = BpeTrainerSettings.DefaultSpecialTokens.ToArray();
    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-training-" + Guid.NewGuid().ToString("N"));

    public TrainingTests()
    {
        TorchRuntime.EnsureLoaded();
        Directory.CreateDirectory(_root);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static ModelShape Tiny(int vocab = 300) => new(vocab, 32, 2, 4, 2, 64, 64);

    private static TrainingOptions Options(int steps = 12) => new("tiny", steps, 4, 17, 1e-2, 2, 0.1, 0.1, 1.0, 7, 3, 4);

    /// <summary>A corpus with structure a tiny model can learn: counting sequences modulo 50 from random starts.</summary>
    private static TokenCorpus Counting(int seed, int documents = 40)
    {
        var random = new Random(seed);
        var docs = new List<IReadOnlyList<int>>();
        for (int d = 0; d < documents; d++)
        {
            int start = random.Next(50);
            docs.Add(Enumerable.Range(0, 30 + random.Next(30)).Select(i => 10 + (start + i) % 50).ToArray());
        }
        return TokenCorpus.FromDocuments(docs, separatorId: 1);
    }

    [Fact]
    public void Parameters_carry_the_hugging_face_names_and_the_predicted_count()
    {
        using var model = new TrainableLlama(Tiny(), ScalarType.Float32, CPU, seed: 1);
        string[] names = model.named_parameters().Select(p => p.name).ToArray();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.down_proj.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("lm_head", StringComparison.Ordinal));
        Assert.Equal(2 + 2 * 9, names.Length);
        Assert.Equal(Tiny().ParameterCount, model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void The_exported_folder_gives_the_training_models_logits_through_the_checkpoint_reader()
    {
        string tokenizer = TokenizerFolder();
        int vocab = TokenizerJsonWriter.VocabularySize(tokenizer);
        using var model = new TrainableLlama(Tiny(vocab), ScalarType.Float32, CPU, seed: 3);
        string folder = Path.Combine(_root, "export");
        IReadOnlyList<string> files = HuggingFaceExport.Write(model, folder, tokenizer, bosTokenId: 0, eosTokenId: 3, ScalarType.Float32, maxShardBytes: 20_000);
        Assert.Contains(SafeTensorsWriter.IndexFileName, files);   // the small shard limit forces shards
        Assert.Contains("tokenizer.json", files);

        long[] ids = [5, 17, 260, 3, 99, 42, 7, 7, 7, 150];
        using Tensor expected = model.forward(tensor(ids).unsqueeze(0)).squeeze(0);
        using EagerCausalLM reference = EagerCausalLM.Load(folder);
        using Tensor actual = reference.Forward(ids);
        Assert.True(expected.allclose(actual, rtol: 1e-4, atol: 1e-4), $"max difference {(expected - actual).abs().max().item<float>()}");

        // bf16, as the GPU run saves: the same logits up to bf16 rounding of the weights.
        string half = Path.Combine(_root, "export-bf16");
        HuggingFaceExport.Write(model, half, tokenizer, bosTokenId: 0, eosTokenId: 3, ScalarType.BFloat16, maxShardBytes: 16_000_000);
        Assert.Contains("\"torch_dtype\": \"bfloat16\"", File.ReadAllText(Path.Combine(half, "config.json")));
        using EagerCausalLM rounded = EagerCausalLM.Load(half);
        using Tensor halfLogits = rounded.Forward(ids);
        double error = (expected - halfLogits).abs().max().item<float>();
        Assert.InRange(error, 1e-6, 0.05);   // not identical (weights were rounded) but close
    }

    [Fact]
    public async Task The_serving_model_decodes_greedily_what_the_training_model_predicts()
    {
        string tokenizerFolder = TokenizerFolder();
        int vocab = TokenizerJsonWriter.VocabularySize(tokenizerFolder);
        string folder = Path.Combine(_root, "greedy");
        // A few training steps make the logits far from uniform, so that argmax ties cannot decide the comparison.
        using var trainer = new Trainer(Options(steps: 6), Tiny(vocab), ScalarType.Float32, CPU, Path.Combine(_root, "greedy-ckpt"));
        trainer.Run(Counting(1), Counting(2, 4), Counting(3, 4), TimeSpan.MaxValue, TextWriter.Null);
        HuggingFaceExport.Write(trainer.Model, folder, tokenizerFolder, 0, 3, ScalarType.Float32, 16_000_000);

        var sequence = new List<long> { 12, 13, 14, 15 };
        using (no_grad())
        {
            for (int i = 0; i < 12; i++)
            {
                using Tensor logits = trainer.Model.forward(tensor(sequence.ToArray()).unsqueeze(0));
                sequence.Add(logits[0, -1].argmax().item<long>());
            }
        }
        using TargetModel target = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, DType = ScalarType.Float32, MaxBatch = 1, MaxContext = 64 });
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = CheckpointTokenizer.Load(folder);
        using var engine = SpeculativeEngine.Create(target, tokenizer, null, new SpeculativeEngineOptions { MaxBatch = 1, EndOfSequenceTokenIds = [] });
        GenerationResult result = await engine.GenerateAsync(new GenerationRequest { PromptTokens = [12, 13, 14, 15], MaxNewTokens = 12, StopTokenIds = [] });
        Assert.Equal(sequence.Skip(4).Select(t => (int)t), result.TokenIds);
    }

    [Fact]
    public void Training_lowers_the_loss_on_a_learnable_corpus()
    {
        using var trainer = new Trainer(Options(steps: 60) with { EvalEvery = 20, CheckpointEvery = 60 }, Tiny(), ScalarType.Float32, CPU, Path.Combine(_root, "learn"));
        TokenCorpus validation = Counting(2, 4);
        double before = trainer.Evaluate(validation);
        Assert.Equal(TrainingOutcome.Finished, trainer.Run(Counting(1), validation, Counting(3, 4), TimeSpan.MaxValue, TextWriter.Null));
        double after = trainer.Evaluate(validation);
        Assert.InRange(before, Math.Log(300) - 0.5, Math.Log(300) + 0.5);   // random initialisation: about ln(vocab)
        Assert.True(after < 1.5, $"validation loss {before:F3} -> {after:F3}");
        Assert.Equal(3, trainer.Log.Count);
        Assert.True(trainer.Log[^1].TrainLoss < trainer.Log[0].TrainLoss);
    }

    [Fact]
    public void A_paused_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one()
    {
        TokenCorpus training = Counting(1), validation = Counting(2, 4), heldOut = Counting(3, 4);
        using var straight = new Trainer(Options(), Tiny(), ScalarType.Float32, CPU, Path.Combine(_root, "straight"));
        Assert.Equal(TrainingOutcome.Finished, straight.Run(training, validation, heldOut, TimeSpan.MaxValue, TextWriter.Null));

        string folder = Path.Combine(_root, "paused");
        using (var first = new Trainer(Options(), Tiny(), ScalarType.Float32, CPU, folder))
        {
            Assert.False(first.Resumed);
            Assert.Equal(TrainingOutcome.TimeLimit, first.Run(training, validation, heldOut, TimeSpan.MaxValue, TextWriter.Null, pauseAfterStep: 5));
            Assert.Equal(5, first.Step);
        }
        using var resumed = new Trainer(Options(), Tiny(), ScalarType.Float32, CPU, folder);
        Assert.True(resumed.Resumed);
        Assert.Equal(5, resumed.Step);
        Assert.Equal(TrainingOutcome.Finished, resumed.Run(training, validation, heldOut, TimeSpan.MaxValue, TextWriter.Null));

        var a = straight.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach ((string name, TorchSharp.Modules.Parameter p) in resumed.Model.named_parameters())
        {
            Assert.True(a[name].allclose(p, rtol: 0, atol: 0), $"{name} differs after resuming");
        }
        Assert.Equal(straight.Log.Select(r => (r.Step, r.TrainLoss, r.ValidationLoss)), resumed.Log.Select(r => (r.Step, r.TrainLoss, r.ValidationLoss)));
        Assert.Equal(straight.Best, resumed.Best);
    }

    [Fact]
    public void A_checkpoint_of_other_options_is_refused_with_what_to_do()
    {
        string folder = Path.Combine(_root, "other");
        using (var first = new Trainer(Options(), Tiny(), ScalarType.Float32, CPU, folder))
        {
            first.Run(Counting(1), Counting(2, 4), Counting(3, 4), TimeSpan.MaxValue, TextWriter.Null, pauseAfterStep: 4);
        }
        var e = Assert.Throws<InvalidDataException>(() => new Trainer(Options() with { PeakLearningRate = 5e-3 }, Tiny(), ScalarType.Float32, CPU, folder));
        Assert.Contains("another --checkpoint folder", e.Message);
    }

    [Fact]
    public void The_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_final_ratio()
    {
        TrainingOptions o = Options(steps: 102) with { WarmupSteps = 2, PeakLearningRate = 1.0, FinalLearningRateRatio = 0.1 };
        Assert.Equal(0.5, o.LearningRate(0), 12);
        Assert.Equal(1.0, o.LearningRate(1), 12);
        Assert.Equal(1.0, o.LearningRate(2), 12);
        Assert.Equal(0.1 + 0.9 * 0.5, o.LearningRate(52), 12);   // half way through the decay
        Assert.Equal(0.1, o.LearningRate(102), 12);
    }

    [Fact]
    public void Batches_depend_only_on_seed_and_step_and_evaluation_windows_predict_each_token_once()
    {
        TokenCorpus corpus = Counting(1);
        using Tensor a = corpus.Batch(7, 3, 4, 17, CPU), b = corpus.Batch(7, 3, 4, 17, CPU), c = corpus.Batch(7, 4, 4, 17, CPU);
        Assert.True(a.allclose(b, rtol: 0, atol: 0));
        Assert.False(a.allclose(c, rtol: 0, atol: 0));

        Tensor[] windows = corpus.Sequential(batch: 3, window: 17, CPU).ToArray();
        long count = windows.Sum(w => w.shape[0]);
        Assert.Equal((corpus.Length - 1) / 16, count);
        for (int i = 1; i < windows.Length; i++)
        {
            // consecutive windows share exactly one token: the last input of one is the first of the next
            Assert.Equal(windows[i - 1][-1, -1].item<long>(), windows[i][0, 0].item<long>());
        }
        foreach (Tensor w in windows)
        {
            w.Dispose();
        }
    }

    private string TokenizerFolder()
    {
        string folder = Path.Combine(_root, "tokenizer");
        if (!File.Exists(Path.Combine(folder, "tokenizer.json")))
        {
            string[] texts = Enumerable.Range(0, 30).Select(i => $"<|im_start|>user\nline {i} of the corpus: def f{i}(x): return x + {i}<|im_end|>\n").ToArray();
            TokenizerJsonWriter.Write(folder, BpeTrainer.Train(texts, new BpeTrainerSettings(300, Specials)), TokenizerFilesSettings.Default with { ModelMaxLength = 64 });
        }
        return folder;
    }
}
