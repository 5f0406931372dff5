using System.Text;
using SpecDecode.Build;

namespace SpecDecode.Tree.Tests;

/// <summary>The ELF code of build/ElfVersionPatch.cs, the same source the MSBuild task compiles.</summary>
public class ElfVersionPatchTests
{
    internal static ElfVersionNeed Glibcxx3432Need(string path) =>
        Assert.Single(ElfVersionPatch.ReadVersionNeeds(path),
            n => n.Library == ElfVersionPatch.LibStdCxx && n.Version == ElfVersionPatch.Glibcxx3432);

    [Fact]
    public void PristineLibTorchSharp_NeedsGlibcxx3432_StrictlyAndOnlyForIosBaseLibraryInit()
    {
        string path = TestFiles.PristineLibTorchSharp;
        ElfVersionNeed need = Glibcxx3432Need(path);

        Assert.False(need.IsWeak);
        Assert.Equal(
            ElfVersionPatch.IosBaseLibraryInitOnly,
            ElfVersionPatch.SymbolsNeedingVersion(File.ReadAllBytes(path), need.Index, path));
        Assert.Contains(ElfVersionPatch.ReadVersionNeeds(path), n => n.Library == "libc.so.6" && n.Version == "GLIBC_2.2.5");
    }

    [Fact]
    public void Weaken_CopyOfLibTorchSharp_SetsTheWeakFlagOnThatNeedOnly()
    {
        using var dir = new TestFiles.TempDir();
        string copy = dir.File("libLibTorchSharp.so");
        File.Copy(TestFiles.PristineLibTorchSharp, copy);
        byte[] before = File.ReadAllBytes(copy);
        var needsBefore = ElfVersionPatch.ReadVersionNeeds(copy);

        Assert.Equal(WeakenOutcome.Patched, ElfVersionPatch.WeakenGlibcxx3432(copy));

        byte[] after = File.ReadAllBytes(copy);
        var needsAfter = ElfVersionPatch.ReadVersionNeeds(copy);
        ElfVersionNeed patched = Glibcxx3432Need(copy);
        Assert.True(patched.IsWeak);
        Assert.Equal(ElfVersionPatch.VerFlagWeak, patched.Flags);

        // exactly the two bytes of that vna_flags changed, and every other need kept its flags
        Assert.Equal(before.Length, after.Length);
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToArray();
        Assert.All(changed, i => Assert.InRange(i, patched.FlagsOffset, patched.FlagsOffset + 1));
        Assert.NotEmpty(changed);
        Assert.Equal(needsBefore.Count, needsAfter.Count);
        for (int i = 0; i < needsBefore.Count; i++)
        {
            if (needsAfter[i].Version == ElfVersionPatch.Glibcxx3432) continue;
            Assert.Equal(needsBefore[i].ToString(), needsAfter[i].ToString());
            Assert.False(needsAfter[i].IsWeak);
        }
    }

    [Fact]
    public void Weaken_Twice_SecondTimeIsANoOp()
    {
        using var dir = new TestFiles.TempDir();
        string copy = dir.File("libLibTorchSharp.so");
        File.Copy(TestFiles.PristineLibTorchSharp, copy);
        Assert.Equal(WeakenOutcome.Patched, ElfVersionPatch.WeakenGlibcxx3432(copy));
        byte[] once = File.ReadAllBytes(copy);
        DateTime stamp = File.GetLastWriteTimeUtc(copy);

        Assert.Equal(WeakenOutcome.AlreadyWeak, ElfVersionPatch.WeakenGlibcxx3432(copy));

        Assert.Equal(once, File.ReadAllBytes(copy));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(copy));
    }

    [Fact]
    public void Weaken_KeepsTheTimeStamp_SoMsBuildIncrementalCopyLeavesThePatchedFile()
    {
        using var dir = new TestFiles.TempDir();
        string copy = dir.File("libLibTorchSharp.so");
        File.Copy(TestFiles.PristineLibTorchSharp, copy);
        var stamp = new DateTime(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(copy, stamp);

        ElfVersionPatch.WeakenGlibcxx3432(copy);

        Assert.Equal(stamp, File.GetLastWriteTimeUtc(copy));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void Weaken_ThroughASymbolicLink_ReplacesTheLinkAndLeavesItsTargetUntouched()
    {
        using var dir = new TestFiles.TempDir();
        string original = dir.File("original.so");
        string link = dir.File("libLibTorchSharp.so");
        File.Copy(TestFiles.PristineLibTorchSharp, original);
        File.CreateSymbolicLink(link, original);
        byte[] originalBytes = File.ReadAllBytes(original);

        Assert.Equal(WeakenOutcome.Patched, ElfVersionPatch.WeakenGlibcxx3432(link));

        Assert.Null(new FileInfo(link).LinkTarget);
        Assert.True(Glibcxx3432Need(link).IsWeak);
        Assert.Equal(originalBytes, File.ReadAllBytes(original));
        Assert.False(Glibcxx3432Need(original).IsWeak);
    }

    [Fact]
    public void Weaken_NonElfFile_FailsWithAClearMessage()
    {
        using var dir = new TestFiles.TempDir();
        string text = dir.File("libLibTorchSharp.so");
        File.WriteAllText(text, "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 2399008\n");

        var e = Assert.Throws<ElfFormatException>(() => ElfVersionPatch.WeakenGlibcxx3432(text));

        Assert.Contains("is not an ELF file", e.Message, StringComparison.Ordinal);
        Assert.Contains(text, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Weaken_TruncatedElf_FailsWithAClearMessage()
    {
        using var dir = new TestFiles.TempDir();
        string truncated = dir.File("libLibTorchSharp.so");
        File.WriteAllBytes(truncated, File.ReadAllBytes(TestFiles.PristineLibTorchSharp).AsSpan(0, 4096).ToArray());

        var e = Assert.Throws<ElfFormatException>(() => ElfVersionPatch.WeakenGlibcxx3432(truncated));

        Assert.Contains("section header table", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Weaken_Elf32_IsRejected()
    {
        byte[] elf = SyntheticElf.Build([("libstdc++.so.6", ["GLIBCXX_3.4.32"])], []);
        elf[4] = 1; // ELFCLASS32
        using var dir = new TestFiles.TempDir();
        File.WriteAllBytes(dir.File("a.so"), elf);

        var e = Assert.Throws<ElfFormatException>(() => ElfVersionPatch.WeakenGlibcxx3432(dir.File("a.so")));

        Assert.Contains("64-bit", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Synthetic_WeakensOnlyTheLibStdCxxNeed_NotTheSameNameOfAnotherLibrary_NorOtherVersions()
    {
        byte[] elf = SyntheticElf.Build(
            [
                ("libc.so.6", ["GLIBC_2.2.5"]),
                ("libother.so.1", ["GLIBCXX_3.4.32"]),
                ("libstdc++.so.6", ["GLIBCXX_3.4.30", "GLIBCXX_3.4.32", "CXXABI_1.3"]),
            ],
            [("_ZSt21ios_base_library_initv", "GLIBCXX_3.4.32"), ("malloc", "GLIBC_2.2.5")]);
        using var dir = new TestFiles.TempDir();
        string path = dir.File("a.so");
        File.WriteAllBytes(path, elf);

        Assert.Equal(WeakenOutcome.Patched, ElfVersionPatch.WeakenGlibcxx3432(path));

        var needs = ElfVersionPatch.ReadVersionNeeds(path);
        Assert.Equal(5, needs.Count);
        var weak = Assert.Single(needs, n => n.IsWeak);
        Assert.Equal(("libstdc++.so.6", "GLIBCXX_3.4.32"), (weak.Library, weak.Version));
    }

    [Fact]
    public void Synthetic_WithoutTheNeed_IsNotRequired_AndUntouched()
    {
        byte[] elf = SyntheticElf.Build([("libstdc++.so.6", ["GLIBCXX_3.4.30"])], [("_ZdlPv", "GLIBCXX_3.4.30")]);
        using var dir = new TestFiles.TempDir();
        string path = dir.File("a.so");
        File.WriteAllBytes(path, elf);

        Assert.Equal(WeakenOutcome.NotRequired, ElfVersionPatch.WeakenGlibcxx3432(path));
        Assert.Equal(elf, File.ReadAllBytes(path));
    }

    [Fact]
    public void Synthetic_WhenAnotherSymbolReallyUsesTheVersion_Refuses()
    {
        byte[] elf = SyntheticElf.Build(
            [("libstdc++.so.6", ["GLIBCXX_3.4.32"])],
            [("_ZSt21ios_base_library_initv", "GLIBCXX_3.4.32"), ("_ZNSt8ios_base4InitC1Ev_gcc13", "GLIBCXX_3.4.32")]);
        using var dir = new TestFiles.TempDir();
        string path = dir.File("a.so");
        File.WriteAllBytes(path, elf);

        var e = Assert.Throws<InvalidOperationException>(() => ElfVersionPatch.WeakenGlibcxx3432(path));

        Assert.Contains("_ZNSt8ios_base4InitC1Ev_gcc13", e.Message, StringComparison.Ordinal);
        Assert.Equal(elf, File.ReadAllBytes(path));
    }

    [Fact]
    public void SystemLibStdCxx_VersionDefinitions_MatchTheStringsInTheFile()
    {
        string? lib = ElfVersionPatch.FindSystemLibStdCxx();
        if (lib == null)
        {
            Assert.False(OperatingSystem.IsLinux() && File.Exists("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"));
            return;
        }

        var defined = ElfVersionPatch.ReadVersionDefinitions(lib);
        Assert.Contains("GLIBCXX_3.4", defined);
        Assert.Contains("CXXABI_1.3", defined);

        byte[] bytes = File.ReadAllBytes(lib);
        bool inFile = bytes.AsSpan().IndexOf(Encoding.ASCII.GetBytes("\0" + ElfVersionPatch.Glibcxx3432 + "\0")) >= 0;
        Assert.Equal(inFile, ElfVersionPatch.LibraryDefinesVersion(lib, ElfVersionPatch.Glibcxx3432));
    }
}

/// <summary>The "auto" decision of the build step: weaken only where the system libstdc++ lacks GLIBCXX_3.4.32.</summary>
public class AutoModeDecisionTests
{
    [Fact]
    public void Gcc13LibStdCxx_DefiningGlibcxx3432_NeedsNoWeakening()
    {
        using var dir = new TestFiles.TempDir();
        string lib = dir.File("libstdc++.so.6");
        File.WriteAllBytes(lib, SyntheticElf.BuildLibrary("libstdc++.so.6", ["GLIBCXX_3.4", "GLIBCXX_3.4.30", "GLIBCXX_3.4.31", "GLIBCXX_3.4.32", "CXXABI_1.3"]));

        Assert.Contains("GLIBCXX_3.4.32", ElfVersionPatch.ReadVersionDefinitions(lib));
        Assert.False(ElfVersionPatch.SystemNeedsWeakening(lib));
    }

    [Fact]
    public void Gcc12LibStdCxx_StoppingAtGlibcxx3430_NeedsWeakening()
    {
        using var dir = new TestFiles.TempDir();
        string lib = dir.File("libstdc++.so.6");
        File.WriteAllBytes(lib, SyntheticElf.BuildLibrary("libstdc++.so.6", ["GLIBCXX_3.4", "GLIBCXX_3.4.30", "CXXABI_1.3"]));

        Assert.Equal(["libstdc++.so.6", "GLIBCXX_3.4", "GLIBCXX_3.4.30", "CXXABI_1.3"], ElfVersionPatch.ReadVersionDefinitions(lib));
        Assert.True(ElfVersionPatch.SystemNeedsWeakening(lib));
    }

    [Fact]
    public void NoLibStdCxxFound_Weakens()
    {
        Assert.True(ElfVersionPatch.SystemNeedsWeakening(null));
    }

    [Fact]
    public void ThisMachine_DecisionMatchesWhetherItsLibStdCxxHasTheVersionString()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        string? lib = ElfVersionPatch.FindSystemLibStdCxx();
        Assert.NotNull(lib);
        bool hasString = File.ReadAllBytes(lib).AsSpan().IndexOf("\0GLIBCXX_3.4.32\0"u8) >= 0;

        Assert.Equal(!hasString, ElfVersionPatch.SystemNeedsWeakening(lib));
    }
}
