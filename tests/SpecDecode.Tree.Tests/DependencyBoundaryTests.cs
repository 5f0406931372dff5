namespace SpecDecode.Tree.Tests;

/// <summary>TorchSharp stays inside SpecDecode.Tree: Core and Suffix remain pure C#.</summary>
public class DependencyBoundaryTests
{
    [Fact]
    public void Core_DoesNotReferenceTorchSharp()
    {
        var references = typeof(DraftTree).Assembly.GetReferencedAssemblies().Select(a => a.Name);

        Assert.DoesNotContain(references, n => n != null && n.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase));
    }

    [Theory]
    [InlineData("src/SpecDecode.Core/SpecDecode.Core.csproj")]
    [InlineData("src/SpecDecode.Suffix/SpecDecode.Suffix.csproj")]
    public void PureProjects_ReferenceNeitherTorchSharpNorTree(string project)
    {
        string text = File.ReadAllText(Path.Combine(SharedFixtures.RepoRoot, project));
        Assert.DoesNotContain("TorchSharp", text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("SpecDecode.Tree", text, StringComparison.Ordinal);
    }
}
