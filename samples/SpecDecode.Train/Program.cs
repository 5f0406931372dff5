namespace SpecDecode.Train;

/// <summary>Entry point. The training loop is not written yet; only the building blocks exist.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine(
            """
            SpecDecode.Train: trains the embedded default model pair on ../shared/data/swebench.

            Status: training loop not written yet. This build contains only the building blocks:
              - Tokenizer/BpeTrainer          byte-level BPE (Llama 3 split pattern) trained on text
              - Tokenizer/TokenizerJsonWriter tokenizer.json, tokenizer_config.json, special_tokens_map.json
              - Checkpoint/SafeTensorsWriter  .safetensors files, sharded with model.safetensors.index.json
            Running it does nothing yet.
            """);
        return args.Length == 0 ? 1 : 2;
    }
}
