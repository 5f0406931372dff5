using SpecDecode.Build;
using TorchSharp;

namespace SpecDecode.Tree.Tests;

/// <summary>TorchSharp's native CPU backend loads on this machine and computes.</summary>
public class TorchSharpLoadTests
{
    [Fact]
    public void EnsureLoaded_LoadsLibTorch_AndReportsItsVersion()
    {
        string version = TorchRuntime.EnsureLoaded();

        Assert.StartsWith("2.", version, StringComparison.Ordinal);
        Assert.Equal(version, torch.__version__);
    }

    [Fact]
    public void Matmul_OnCpu_GivesTheKnownProduct()
    {
        using var a = torch.tensor(new float[] { 1, 2, 3, 4 }, 2, 2);
        using var b = torch.tensor(new float[] { 5, 6, 7, 8 }, 2, 2);

        using var product = torch.matmul(a, b);

        Assert.Equal(DeviceType.CPU, product.device_type);
        Assert.Equal(new long[] { 2, 2 }, product.shape);
        Assert.Equal(new float[] { 19, 22, 43, 50 }, product.data<float>().ToArray());
    }

    [Fact]
    public void OnesSum_IsFour()
    {
        using var ones = torch.ones(2, 2);
        using var sum = ones.sum();

        Assert.Equal(4f, sum.item<float>());
    }

    [Fact]
    public void BuildOutputCopy_IsWeakenedWhereNeeded_AndTheNuGetCacheCopyIsNot()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the build step is a no-op elsewhere
        }

        string? system = ElfVersionPatch.FindSystemLibStdCxx();
        bool systemProvides = system != null && ElfVersionPatch.LibraryDefinesVersion(system, ElfVersionPatch.Glibcxx3432);

        ElfVersionNeed output = ElfVersionPatchTests.Glibcxx3432Need(TestFiles.OutputLibTorchSharp);
        ElfVersionNeed pristine = ElfVersionPatchTests.Glibcxx3432Need(TestFiles.PristineLibTorchSharp);

        Assert.False(pristine.IsWeak);
        Assert.Equal(!systemProvides, output.IsWeak);
    }
}
