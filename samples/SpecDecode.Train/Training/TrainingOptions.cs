namespace SpecDecode.Train.Training;

/// <summary>Everything that decides a training run (saved with each checkpoint; a resumed run must match it).</summary>
/// <param name="Shape">The model shape's name (<see cref="Model.ModelShape.Named"/>).</param>
/// <param name="Steps">Optimiser steps of the whole run (the learning-rate schedule spans them).</param>
/// <param name="Batch">Windows per step.</param>
/// <param name="Window">Tokens per window (the model sees Window - 1 inputs and predicts Window - 1 targets).</param>
/// <param name="PeakLearningRate">The learning rate after warm-up.</param>
/// <param name="WarmupSteps">Linear warm-up steps.</param>
/// <param name="FinalLearningRateRatio">The cosine decay ends at this fraction of the peak.</param>
/// <param name="WeightDecay">AdamW weight decay on matrices (none on norms).</param>
/// <param name="GradientClip">The global gradient norm is clipped to this.</param>
/// <param name="Seed">Seeds the initial weights and every step's batch.</param>
/// <param name="EvalEvery">Steps between validation and held-out loss measurements (and loss-log rows).</param>
/// <param name="CheckpointEvery">Steps between checkpoints.</param>
public sealed record TrainingOptions(
    string Shape, int Steps, int Batch, int Window, double PeakLearningRate, int WarmupSteps, double FinalLearningRateRatio,
    double WeightDecay, double GradientClip, long Seed, int EvalEvery, int CheckpointEvery)
{
    /// <summary>Checks the numbers.</summary>
    /// <exception cref="ArgumentException">A count is not positive, or a rate is out of range.</exception>
    public void Validate()
    {
        if (Steps <= 0 || Batch <= 0 || Window < 2 || EvalEvery <= 0 || CheckpointEvery <= 0 || WarmupSteps < 0)
        {
            throw new ArgumentException($"steps, batch, eval and checkpoint intervals must be positive and the window at least 2: {this}.");
        }
        if (PeakLearningRate <= 0 || FinalLearningRateRatio is < 0 or > 1 || WeightDecay < 0 || GradientClip <= 0)
        {
            throw new ArgumentException($"learning rate, final ratio (0..1), weight decay and gradient clip are out of range: {this}.");
        }
    }

    /// <summary>The learning rate at a step: linear warm-up to the peak, then cosine decay to the final ratio.</summary>
    public double LearningRate(long step)
    {
        if (step < WarmupSteps)
        {
            return PeakLearningRate * (step + 1) / WarmupSteps;
        }
        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / Math.Max(1, Steps - WarmupSteps));
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return PeakLearningRate * (FinalLearningRateRatio + (1 - FinalLearningRateRatio) * cosine);
    }
}
