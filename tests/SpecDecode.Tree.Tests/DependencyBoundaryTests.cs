using System.Xml.Linq;

namespace SpecDecode.Tree.Tests;

/// <summary>TorchSharp stays inside SpecDecode.Tree: Core, Suffix, Tokenization and Extensions.AI remain pure C#.</summary>
public class DependencyBoundaryTests
{
    [Theory]
    [InlineData(typeof(DraftTree))]
    [InlineData(typeof(SpecDecode.Tokenization.ChatTemplate))]
    [InlineData(typeof(SpecDecode.Extensions.AI.SpeculativeChatClient))]
    public void PureAssemblies_DoNotReferenceTorchSharpOrTree(Type type)
    {
        var references = type.Assembly.GetReferencedAssemblies().Select(a => a.Name);

        Assert.DoesNotContain(references, n => n != null && n.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(references, n => n == "SpecDecode.Tree");
    }

    [Theory]
    [InlineData("src/SpecDecode.Core/SpecDecode.Core.csproj")]
    [InlineData("src/SpecDecode.Suffix/SpecDecode.Suffix.csproj")]
    [InlineData("src/SpecDecode.Tokenization/SpecDecode.Tokenization.csproj")]
    [InlineData("src/SpecDecode.Extensions.AI/SpecDecode.Extensions.AI.csproj")]
    public void PureProjects_ReferenceNeitherTorchSharpNorTree(string project)
    {
        XDocument xml = XDocument.Load(Path.Combine(SharedFixtures.RepoRoot, project));
        string[] references = xml.Descendants()
            .Where(e => e.Name.LocalName is "PackageReference" or "ProjectReference")
            .Select(e => (string?)e.Attribute("Include") ?? "")
            .ToArray();

        Assert.DoesNotContain(references, r => r.Contains("TorchSharp", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(references, r => r.Contains("SpecDecode.Tree", StringComparison.Ordinal));
    }
}
