using SpecDecode.Train.Model;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Train.Checkpoint;

/// <summary>
/// Saves a trained model as a Hugging Face folder that transformers and <see cref="TargetModel.Load"/> both read:
/// config.json, generation_config.json, the weights as safetensors (bf16 or fp16, sharded past a size limit) and the
/// tokenizer files copied from the tokenizer folder.
/// </summary>
public static class HuggingFaceExport
{
    /// <summary>The tokenizer files copied next to the weights.</summary>
    public static readonly string[] TokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

    /// <summary>Writes <paramref name="model"/> into <paramref name="folder"/>.</summary>
    /// <param name="model">The trained model.</param>
    /// <param name="folder">The checkpoint folder (created; files of an earlier export are replaced).</param>
    /// <param name="tokenizerFolder">Where tokenizer.json and its companions are.</param>
    /// <param name="bosTokenId">The beginning-of-sequence token's id.</param>
    /// <param name="eosTokenId">The end-of-turn token's id (generation stops there).</param>
    /// <param name="dtype">Float16 or BFloat16 (or Float32).</param>
    /// <param name="maxShardBytes">The most weight bytes per safetensors file.</param>
    /// <returns>The files written.</returns>
    public static IReadOnlyList<string> Write(TrainableLlama model, string folder, string tokenizerFolder, int bosTokenId, int eosTokenId,
        ScalarType dtype, long maxShardBytes)
    {
        (SafeTensorsDType fileType, string torchName) = dtype switch
        {
            ScalarType.BFloat16 => (SafeTensorsDType.BFloat16, "bfloat16"),
            ScalarType.Float16 => (SafeTensorsDType.Float16, "float16"),
            ScalarType.Float32 => (SafeTensorsDType.Float32, "float32"),
            _ => throw new ArgumentException($"weights can be saved as bfloat16, float16 or float32, not {dtype}."),
        };
        Directory.CreateDirectory(folder);
        foreach (string old in Directory.EnumerateFiles(folder, "model*.safetensors*"))
        {
            File.Delete(old);
        }
        var tensors = new List<TensorData>();
        foreach ((string name, TorchSharp.Modules.Parameter p) in model.named_parameters())
        {
            using Tensor cpu = p.detach().to(dtype).cpu().contiguous();
            tensors.Add(new TensorData(name, fileType, cpu.shape, Bytes(cpu)));
        }
        var written = new List<string>(SafeTensorsWriter.Write(folder, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" }));
        model.Shape.WriteConfig(folder, bosTokenId, eosTokenId, torchName);
        File.WriteAllText(Path.Combine(folder, "generation_config.json"),
            $"{{\n  \"bos_token_id\": {bosTokenId},\n  \"eos_token_id\": {eosTokenId},\n  \"do_sample\": false\n}}\n");
        written.Add("config.json");
        written.Add("generation_config.json");
        foreach (string file in TokenizerFiles)
        {
            string source = Path.Combine(tokenizerFolder, file);
            if (!File.Exists(source))
            {
                throw new FileNotFoundException($"the tokenizer folder {tokenizerFolder} has no {file}; run the tokenizer command first.", source);
            }
            File.Copy(source, Path.Combine(folder, file), overwrite: true);
            written.Add(file);
        }
        return written;
    }

    /// <summary>The tensor's raw little-endian bytes (contiguous, on the CPU).</summary>
    private static byte[] Bytes(Tensor t) => t.bytes.ToArray();
}
