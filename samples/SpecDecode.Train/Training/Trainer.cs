using System.Diagnostics;
using System.Globalization;
using SpecDecode.Train.Data;
using SpecDecode.Train.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpecDecode.Train.Training;

/// <summary>One row of the loss log: the mean training loss since the previous row, the loss on every validation
/// window, and the loss on the first 64 held-out windows (a cheap running view; the kept model's loss on the whole
/// held-out set is measured when it is exported).</summary>
public sealed record LossRow(long Step, double TrainLoss, double ValidationLoss, double HeldOutLoss, double LearningRate, long Tokens, double Seconds)
{
    /// <summary>The CSV header.</summary>
    public const string Header = "step,train_loss,validation_loss,held_out_loss,learning_rate,tokens,seconds";

    /// <summary>The row as CSV (invariant culture).</summary>
    public string ToCsv() => string.Create(CultureInfo.InvariantCulture,
        $"{Step},{TrainLoss:R},{ValidationLoss:R},{HeldOutLoss:R},{LearningRate:R},{Tokens},{Seconds:F2}");

    /// <summary>Parses a CSV row.</summary>
    public static LossRow Parse(string line)
    {
        string[] f = line.Split(',');
        double D(int i) => double.Parse(f[i], CultureInfo.InvariantCulture);
        return new LossRow(long.Parse(f[0], CultureInfo.InvariantCulture), D(1), D(2), D(3), D(4), long.Parse(f[5], CultureInfo.InvariantCulture), D(6));
    }
}

/// <summary>How a call to <see cref="Trainer.Run"/> ended.</summary>
public enum TrainingOutcome
{
    /// <summary>Every step ran.</summary>
    Finished,

    /// <summary>The time limit or the pause step came first; the last checkpoint resumes the run.</summary>
    TimeLimit,
}

/// <summary>
/// The training loop: AdamW (no decay on norm weights), warm-up and cosine learning rate, global-norm gradient
/// clipping without a host synchronisation, evaluation every few steps on a validation stream (held out from training)
/// and on the held-out trajectories, and checkpoints that resume the run exactly (weights, optimiser moments, step,
/// loss log; batches are a function of the step).
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly TrainingOptions _options;
    private readonly TrainableLlama _model;
    private readonly AdamW _optimizer;
    private readonly Device _device;
    private readonly List<LossRow> _log = [];
    private long _step;
    private double _secondsBefore;
    private (long Step, double Loss) _best = (0, double.PositiveInfinity);
    private (double Sum, int Count) _pendingLoss;

    /// <summary>Creates the model and optimiser for <paramref name="shape"/>, or resumes from <paramref name="checkpointFolder"/>
    /// when it holds a checkpoint of the same options.</summary>
    /// <exception cref="InvalidDataException">The checkpoint was written with other options.</exception>
    public Trainer(TrainingOptions options, ModelShape shape, ScalarType computeType, Device device, string checkpointFolder)
    {
        options.Validate();
        _options = options;
        _device = device;
        CheckpointFolder = checkpointFolder;
        _model = new TrainableLlama(shape, computeType, device, options.Seed);
        var decayed = new List<Parameter>();
        var plain = new List<Parameter>();
        foreach ((string name, Parameter p) in _model.named_parameters())
        {
            (name.EndsWith("norm.weight", StringComparison.Ordinal) ? plain : decayed).Add(p);
        }
        _optimizer = optim.AdamW(
        [
            new AdamW.ParamGroup(decayed, options.PeakLearningRate, 0.9, 0.95, 1e-8, options.WeightDecay, false, false),
            new AdamW.ParamGroup(plain, options.PeakLearningRate, 0.9, 0.95, 1e-8, 0, false, false),
        ], options.PeakLearningRate);
        Resumed = TrainingCheckpoint.TryLoad(checkpointFolder, options, _model, _optimizer, out _step, out _secondsBefore, out _best, out _pendingLoss, _log);
    }

    /// <summary>The model being trained.</summary>
    public TrainableLlama Model => _model;

    /// <summary>Where checkpoints go.</summary>
    public string CheckpointFolder { get; }

    /// <summary>Whether the constructor resumed from a checkpoint.</summary>
    public bool Resumed { get; }

    /// <summary>Steps done so far.</summary>
    public long Step => _step;

    /// <summary>The step with the lowest validation loss so far, and that loss.</summary>
    public (long Step, double Loss) Best => _best;

    /// <summary>The loss log so far.</summary>
    public IReadOnlyList<LossRow> Log => _log;

    /// <summary>Trains until every step has run, <paramref name="timeLimit"/> has passed or the pause step is done, checkpointing on the way and at
    /// the end. <paramref name="onBestValidation"/> runs whenever the validation loss (all validation windows) reaches a
    /// new low, with the weights of that step: the place to export the model, so that the kept model is chosen on
    /// validation, never on the held-out trajectories.</summary>
    /// <param name="pauseAfterStep">Stop after this step as if out of time (0: never); a later run resumes.</param>
    public TrainingOutcome Run(TokenCorpus training, TokenCorpus validation, TokenCorpus heldOut, TimeSpan timeLimit, TextWriter progress,
        Action<Trainer>? onBestValidation = null, long pauseAfterStep = 0)
    {
        var watch = Stopwatch.StartNew();
        // Training losses of the steps since the last log row, summed on the device (read once per row); a checkpoint
        // between rows carries the partial sum so that a resumed run logs the same means.
        using Tensor lossSum = tensor(new[] { (float)_pendingLoss.Sum }, device: _device);
        int lossCount = _pendingLoss.Count;
        while (_step < _options.Steps)
        {
            double lr = _options.LearningRate(_step);
            foreach (ParamGroup group in _optimizer.ParamGroups)
            {
                group.LearningRate = lr;
            }
            using (var scope = NewDisposeScope())
            {
                Tensor batch = training.Batch(_options.Seed, _step, _options.Batch, _options.Window, _device);
                _model.train();
                _optimizer.zero_grad();
                Tensor loss = _model.Loss(batch);
                loss.backward();
                ClipGradients(_options.GradientClip);
                _optimizer.step();
                lossSum.add_(loss.detach());
            }
            lossCount++;
            _step++;
            bool last = _step == _options.Steps;
            if (_step % _options.EvalEvery == 0 || last)
            {
                double train = (double)lossSum.item<float>() / lossCount;
                lossSum.zero_();
                lossCount = 0;
                double validationLoss = Evaluate(validation);
                double heldOutLoss = Evaluate(heldOut, maxWindows: 64);
                var row = new LossRow(_step, train, validationLoss, heldOutLoss, lr, _step * _options.Batch * (long)(_options.Window - 1),
                    _secondsBefore + watch.Elapsed.TotalSeconds);
                _log.Add(row);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {_step}/{_options.Steps}: train {train:F4}, validation {validationLoss:F4}, held out {heldOutLoss:F4}, lr {lr:E2}, {row.Seconds:F0} s"));
                if (validationLoss < _best.Loss)
                {
                    _best = (_step, validationLoss);
                    onBestValidation?.Invoke(this);
                }
            }
            bool outOfTime = watch.Elapsed >= timeLimit || _step == pauseAfterStep;
            if (_step % _options.CheckpointEvery == 0 || last || outOfTime)
            {
                _pendingLoss = (lossSum.item<float>(), lossCount);
                TrainingCheckpoint.Save(CheckpointFolder, _options, _model, _optimizer, _step, _secondsBefore + watch.Elapsed.TotalSeconds, _best, _pendingLoss, _log);
            }
            if (outOfTime && !last)
            {
                progress.WriteLine($"stopped at step {_step} (time limit or pause); the checkpoint in {CheckpointFolder} resumes the run.");
                return TrainingOutcome.TimeLimit;
            }
        }
        return TrainingOutcome.Finished;
    }

    /// <summary>Mean next-token loss over the corpus's sequential windows (at most <paramref name="maxWindows"/>).</summary>
    public double Evaluate(TokenCorpus corpus, int maxWindows = int.MaxValue)
    {
        _model.eval();
        using var noGrad = no_grad();
        double sum = 0;
        long count = 0;
        foreach (Tensor windows in corpus.Sequential(_options.Batch, _options.Window, _device, maxWindows))
        {
            using var scope = NewDisposeScope();
            Tensor loss = _model.Loss(windows);
            long n = windows.shape[0];
            sum += loss.item<float>() * n;
            count += n;
            windows.Dispose();
        }
        _model.train();
        return count == 0 ? double.NaN : sum / count;
    }

    /// <summary>Scales all gradients by min(1, clip / global norm), computed on the device (no host round trip).</summary>
    private void ClipGradients(double clip)
    {
        using var scope = NewDisposeScope();
        Tensor[] grads = _model.parameters().Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToArray();
        Tensor squares = stack(grads.Select(g => g.pow(2).sum()).ToArray()).sum();
        Tensor scale = (clip / (squares.sqrt() + 1e-6)).clamp_max(1.0);
        foreach (Tensor g in grads)
        {
            g.mul_(scale);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _optimizer.Dispose();
        _model.Dispose();
    }
}
