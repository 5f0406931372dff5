// Shared by build/LibTorchSharp.Glibcxx.targets (compiled there as a RoslynCodeTaskFactory inline task)
// and by tests/SpecDecode.Tree.Tests (compiled there with SPECDECODE_ELF_PATCH_NO_TASK, so the very same
// ELF code is unit-tested). Keep it to netstandard APIs and plain C#: the inline task is compiled against
// MSBuild's netstandard reference assemblies, not against net10.0.
//
// Why: libLibTorchSharp.so of TorchSharp 0.107.0 was linked with GCC 13 and so carries a version need on
// GLIBCXX_3.4.32, for one symbol only, std::ios_base_library_init(), which GCC 13's <iostream> references
// without a relocation (nothing ever calls it through the library). Debian 12's libstdc++ (GCC 12) stops at
// GLIBCXX_3.4.30, so the dynamic loader refuses the library. Setting VER_FLG_WEAK on that one Elf64_Vernaux
// entry makes the loader accept a libstdc++ without that version. See docs/torchsharp-on-debian12.md.
#nullable enable

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace SpecDecode.Build
{
    /// <summary>The file is not an ELF64 little-endian file, or its headers or sections are out of bounds.</summary>
    public sealed class ElfFormatException : Exception
    {
        /// <summary>Creates the exception.</summary>
        public ElfFormatException(string message) : base(message) { }
    }

    /// <summary>One Elf64_Vernaux entry of .gnu.version_r, with the library (Elf64_Verneed.vn_file) it belongs to.</summary>
    public sealed class ElfVersionNeed
    {
        /// <summary>Creates the entry.</summary>
        public ElfVersionNeed(string library, string version, ushort flags, ushort index, long flagsOffset)
        {
            Library = library;
            Version = version;
            Flags = flags;
            Index = index;
            FlagsOffset = flagsOffset;
        }

        /// <summary>The needed library, e.g. libstdc++.so.6.</summary>
        public string Library { get; }

        /// <summary>The needed version, e.g. GLIBCXX_3.4.32.</summary>
        public string Version { get; }

        /// <summary>vna_flags.</summary>
        public ushort Flags { get; }

        /// <summary>vna_other: the version index that .gnu.version entries use to point at this need.</summary>
        public ushort Index { get; }

        /// <summary>File offset of vna_flags.</summary>
        public long FlagsOffset { get; }

        /// <summary>Whether VER_FLG_WEAK is set.</summary>
        public bool IsWeak => (Flags & ElfVersionPatch.VerFlagWeak) != 0;

        /// <inheritdoc />
        public override string ToString() => Library + "/" + Version + " flags=0x" + Flags.ToString("x") + " index=" + Index;
    }

    /// <summary>What <see cref="ElfVersionPatch.WeakenVersionNeed"/> did.</summary>
    public enum WeakenOutcome
    {
        /// <summary>The file has no such version need; left untouched.</summary>
        NotRequired,

        /// <summary>The need was already weak; left untouched.</summary>
        AlreadyWeak,

        /// <summary>VER_FLG_WEAK was set on the need and the file rewritten.</summary>
        Patched,
    }

    /// <summary>Reads ELF64 version needs/definitions and weakens one version need.</summary>
    public static class ElfVersionPatch
    {
        /// <summary>The library whose version need is weakened.</summary>
        public const string LibStdCxx = "libstdc++.so.6";

        /// <summary>The GCC 13 libstdc++ symbol version that Debian 12 lacks.</summary>
        public const string Glibcxx3432 = "GLIBCXX_3.4.32";

        /// <summary>VER_FLG_WEAK.</summary>
        public const ushort VerFlagWeak = 0x2;

        /// <summary>
        /// The only symbols allowed to use the weakened version: GCC 13's &lt;iostream&gt; references
        /// std::ios_base_library_init() with no relocation, so a missing definition is never looked up.
        /// </summary>
        public static readonly string[] IosBaseLibraryInitOnly = { "_ZSt21ios_base_library_initv" };

        private const uint ShtStrtab = 3;
        private const uint ShtDynsym = 11;
        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const uint ShtGnuVersym = 0x6fffffff;
        private const int MaxEntries = 1 << 20;

        private struct Section
        {
            public uint Type;
            public long Offset;
            public long Size;
            public uint Link;
            public uint Info;
            public long EntSize;
        }

        /// <summary>Lists every Elf64_Vernaux entry of the file's .gnu.version_r section (empty when it has none).</summary>
        public static IReadOnlyList<ElfVersionNeed> ReadVersionNeeds(string path) => ReadVersionNeeds(File.ReadAllBytes(path), path);

        /// <summary>Lists every Elf64_Vernaux entry of an ELF image held in memory.</summary>
        public static IReadOnlyList<ElfVersionNeed> ReadVersionNeeds(byte[] elf, string name)
        {
            Section[] sections = ReadSections(elf, name);
            var result = new List<ElfVersionNeed>();
            foreach (Section verneed in sections)
            {
                if (verneed.Type != ShtGnuVerneed)
                {
                    continue;
                }

                Section strtab = LinkedStringTable(sections, verneed, name, ".gnu.version_r");
                long entry = verneed.Offset;
                for (uint i = 0; i < verneed.Info; i++)
                {
                    // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
                    CheckRange(elf, entry, 16, verneed, name, "Elf64_Verneed");
                    ushort count = U16(elf, entry + 2);
                    string library = ReadString(elf, strtab, U32(elf, entry + 4), name);
                    long aux = entry + U32(elf, entry + 8);
                    for (int j = 0; j < count; j++)
                    {
                        // Elf64_Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32
                        CheckRange(elf, aux, 16, verneed, name, "Elf64_Vernaux");
                        string version = ReadString(elf, strtab, U32(elf, aux + 8), name);
                        result.Add(new ElfVersionNeed(library, version, U16(elf, aux + 4), U16(elf, aux + 6), aux + 4));
                        uint nextAux = U32(elf, aux + 12);
                        if (nextAux == 0)
                        {
                            break;
                        }

                        aux += nextAux;
                    }

                    uint next = U32(elf, entry + 12);
                    if (next == 0)
                    {
                        break;
                    }

                    entry += next;
                }
            }

            return result;
        }

        /// <summary>Lists the version names the file defines in .gnu.version_d (what a libstdc++ provides).</summary>
        public static IReadOnlyList<string> ReadVersionDefinitions(string path)
        {
            byte[] elf = File.ReadAllBytes(path);
            Section[] sections = ReadSections(elf, path);
            var result = new List<string>();
            foreach (Section verdef in sections)
            {
                if (verdef.Type != ShtGnuVerdef)
                {
                    continue;
                }

                Section strtab = LinkedStringTable(sections, verdef, path, ".gnu.version_d");
                long entry = verdef.Offset;
                for (uint i = 0; i < verdef.Info; i++)
                {
                    // Elf64_Verdef: vd_version u16, vd_flags u16, vd_ndx u16, vd_cnt u16, vd_hash u32, vd_aux u32, vd_next u32
                    CheckRange(elf, entry, 20, verdef, path, "Elf64_Verdef");
                    if (U16(elf, entry + 6) > 0)
                    {
                        // the first Elf64_Verdaux (vda_name u32, vda_next u32) names the version itself
                        long aux = entry + U32(elf, entry + 12);
                        CheckRange(elf, aux, 8, verdef, path, "Elf64_Verdaux");
                        result.Add(ReadString(elf, strtab, U32(elf, aux), path));
                    }

                    uint next = U32(elf, entry + 16);
                    if (next == 0)
                    {
                        break;
                    }

                    entry += next;
                }
            }

            return result;
        }

        /// <summary>
        /// Names of the undefined dynamic symbols bound to version index <paramref name="versionIndex"/>
        /// (via .gnu.version), i.e. the symbols that need that version.
        /// </summary>
        public static IReadOnlyList<string> SymbolsNeedingVersion(byte[] elf, ushort versionIndex, string name)
        {
            Section[] sections = ReadSections(elf, name);
            var result = new List<string>();
            Section? dynsym = null;
            Section? versym = null;
            foreach (Section s in sections)
            {
                if (s.Type == ShtDynsym) dynsym = s;
                if (s.Type == ShtGnuVersym) versym = s;
            }

            if (dynsym == null || versym == null)
            {
                return result; // no versioned symbols at all
            }

            Section sym = dynsym.Value;
            Section ver = versym.Value;
            Section strtab = LinkedStringTable(sections, sym, name, ".dynsym");
            long entSize = sym.EntSize == 0 ? 24 : sym.EntSize;
            if (entSize < 24) throw new ElfFormatException(name + ": .dynsym entry size " + entSize + " is smaller than Elf64_Sym.");
            long count = sym.Size / entSize;
            if (count > ver.Size / 2) throw new ElfFormatException(name + ": .gnu.version is shorter than .dynsym.");
            for (long i = 0; i < count; i++)
            {
                long v = ver.Offset + (2 * i);
                CheckRange(elf, v, 2, ver, name, ".gnu.version entry");
                if ((U16(elf, v) & 0x7fff) != versionIndex) continue;

                // Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64
                long s = sym.Offset + (i * entSize);
                CheckRange(elf, s, 24, sym, name, "Elf64_Sym");
                if (U16(elf, s + 6) != 0) continue; // defined here, not needed from elsewhere
                result.Add(ReadString(elf, strtab, U32(elf, s), name));
            }

            return result;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on the need for <paramref name="version"/> of <paramref name="library"/>, and on nothing else.
        /// Idempotent. Refuses (InvalidOperationException) when a symbol outside <paramref name="allowedSymbols"/> needs
        /// that version, since then the version is really used. The file is rewritten through a temporary copy and a
        /// rename, so a hard or symbolic link to it (e.g. into the NuGet cache) is replaced, never written through.
        /// </summary>
        public static WeakenOutcome WeakenVersionNeed(string path, string library, string version, IReadOnlyCollection<string> allowedSymbols)
        {
            byte[] elf = File.ReadAllBytes(path);
            var matches = new List<ElfVersionNeed>();
            foreach (ElfVersionNeed need in ReadVersionNeeds(elf, path))
            {
                if (need.Library == library && need.Version == version)
                {
                    matches.Add(need);
                }
            }

            if (matches.Count == 0) return WeakenOutcome.NotRequired;

            var toPatch = matches.FindAll(m => !m.IsWeak);
            if (toPatch.Count == 0) return WeakenOutcome.AlreadyWeak;

            var allowed = new HashSet<string>(allowedSymbols, StringComparer.Ordinal);
            foreach (ElfVersionNeed need in toPatch)
            {
                var users = SymbolsNeedingVersion(elf, need.Index, path);
                var unexpected = new List<string>();
                foreach (string user in users)
                {
                    if (!allowed.Contains(user)) unexpected.Add(user);
                }

                if (unexpected.Count > 0)
                {
                    throw new InvalidOperationException(
                        path + " really uses " + version + " of " + library + " (symbols: " + string.Join(", ", unexpected) +
                        "), not only " + string.Join(", ", allowedSymbols) + "; weakening that version need would make it fail later at run time. " +
                        "Install a libstdc++ from GCC 13 or newer (e.g. Debian 13 or Ubuntu 24.04) instead.");
                }
            }

            string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
            string temp = Path.Combine(directory, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N") + ".tmp");
            try
            {
                File.Copy(path, temp, false); // keeps the mode bits; a new inode, never the link target
                using (var stream = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                {
                    foreach (ElfVersionNeed need in toPatch)
                    {
                        ushort flags = (ushort)(need.Flags | VerFlagWeak);
                        stream.Position = need.FlagsOffset;
                        stream.WriteByte((byte)(flags & 0xff));
                        stream.WriteByte((byte)(flags >> 8));
                    }
                }

                foreach (ElfVersionNeed need in ReadVersionNeeds(temp))
                {
                    if (need.Library == library && need.Version == version && !need.IsWeak)
                    {
                        throw new IOException("Writing VER_FLG_WEAK into " + temp + " did not take effect.");
                    }
                }

                // Keep the copy's time stamp: MSBuild's incremental Copy (SkipUnchangedFiles) then leaves the patched
                // file alone on the next build instead of copying the original over it and patching again.
                File.SetLastWriteTimeUtc(temp, File.GetLastWriteTimeUtc(path));
                File.Replace(temp, path, null);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }

            return WeakenOutcome.Patched;
        }

        /// <summary>Weakens GLIBCXX_3.4.32 of libstdc++.so.6, allowing only std::ios_base_library_init() to use it.</summary>
        public static WeakenOutcome WeakenGlibcxx3432(string path) => WeakenVersionNeed(path, LibStdCxx, Glibcxx3432, IosBaseLibraryInitOnly);

        /// <summary>
        /// The libstdc++.so.6 the dynamic loader would pick: the multiarch and lib64 directories first, then the
        /// ld.so cache (ldconfig -p). Null when none is found or not on Linux.
        /// </summary>
        public static string? FindSystemLibStdCxx()
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return null;

            string triple;
            switch (RuntimeInformation.ProcessArchitecture)
            {
                case Architecture.X64: triple = "x86_64-linux-gnu"; break;
                case Architecture.Arm64: triple = "aarch64-linux-gnu"; break;
                default: triple = ""; break;
            }

            var candidates = new List<string>();
            if (triple.Length > 0)
            {
                candidates.Add("/usr/lib/" + triple + "/libstdc++.so.6");
                candidates.Add("/lib/" + triple + "/libstdc++.so.6");
            }

            candidates.Add("/usr/lib64/libstdc++.so.6");
            candidates.Add("/lib64/libstdc++.so.6");
            foreach (string candidate in candidates)
            {
                if (File.Exists(candidate)) return candidate;
            }

            return FromLdconfig();
        }

        private static string? FromLdconfig()
        {
            foreach (string ldconfig in new[] { "/sbin/ldconfig", "/usr/sbin/ldconfig" })
            {
                if (!File.Exists(ldconfig)) continue;
                try
                {
                    var info = new ProcessStartInfo(ldconfig, "-p") { RedirectStandardOutput = true, UseShellExecute = false };
                    using (Process? process = Process.Start(info))
                    {
                        if (process == null) continue;
                        string output = process.StandardOutput.ReadToEnd();
                        process.WaitForExit();
                        foreach (string line in output.Split('\n'))
                        {
                            // "	libstdc++.so.6 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libstdc++.so.6"
                            string trimmed = line.Trim();
                            int arrow = trimmed.IndexOf("=>", StringComparison.Ordinal);
                            if (trimmed.StartsWith("libstdc++.so.6 ", StringComparison.Ordinal) && arrow > 0)
                            {
                                string target = trimmed.Substring(arrow + 2).Trim();
                                if (File.Exists(target)) return target;
                            }
                        }
                    }
                }
                catch (Exception e) when (e is IOException || e is InvalidOperationException || e is System.ComponentModel.Win32Exception)
                {
                    // no usable ldconfig: treat as not found
                }
            }

            return null;
        }

        /// <summary>
        /// What "auto" decides: weaken unless the libstdc++ the loader would use (<paramref name="libStdCxxPath"/>,
        /// from <see cref="FindSystemLibStdCxx"/>) defines GLIBCXX_3.4.32. With no libstdc++ found it weakens,
        /// which is harmless: a weak need only matters when the version is missing.
        /// </summary>
        public static bool SystemNeedsWeakening(string? libStdCxxPath) =>
            libStdCxxPath == null || !LibraryDefinesVersion(libStdCxxPath, Glibcxx3432);

        /// <summary>
        /// Whether the libstdc++ at <paramref name="libStdCxxPath"/> defines <paramref name="version"/>: read from its
        /// .gnu.version_d, or, if that cannot be parsed, by looking for the NUL-terminated name in the file.
        /// </summary>
        public static bool LibraryDefinesVersion(string libStdCxxPath, string version)
        {
            try
            {
                foreach (string defined in ReadVersionDefinitions(libStdCxxPath))
                {
                    if (defined == version) return true;
                }

                return false;
            }
            catch (ElfFormatException)
            {
                byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
                byte[] hay = File.ReadAllBytes(libStdCxxPath);
                for (int i = 0; i + needle.Length <= hay.Length; i++)
                {
                    int k = 0;
                    while (k < needle.Length && hay[i + k] == needle[k]) k++;
                    if (k == needle.Length && (i == 0 || hay[i - 1] == 0)) return true;
                }

                return false;
            }
        }

        private static Section[] ReadSections(byte[] elf, string name)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            {
                throw new ElfFormatException(name + " is not an ELF file (no \\x7fELF magic at its start); expected the native libLibTorchSharp.so of TorchSharp.");
            }

            if (elf[4] != 2) throw new ElfFormatException(name + " is not a 64-bit ELF file (EI_CLASS=" + elf[4] + "); only ELF64 is supported.");
            if (elf[5] != 1) throw new ElfFormatException(name + " is not a little-endian ELF file (EI_DATA=" + elf[5] + "); only little-endian is supported.");

            long shoff = (long)U64(elf, 0x28);
            int shentsize = U16(elf, 0x3a);
            long shnum = U16(elf, 0x3c);
            if (shoff == 0) throw new ElfFormatException(name + " has no section header table.");
            if (shentsize < 64) throw new ElfFormatException(name + ": section header size " + shentsize + " is smaller than Elf64_Shdr.");
            if (shoff < 0 || shoff > elf.Length - 64) throw new ElfFormatException(name + ": section header table offset " + shoff + " is outside the file.");
            if (shnum == 0) shnum = (long)U64(elf, shoff + 32); // extended numbering: the count is in section 0's sh_size
            if (shnum <= 0 || shnum > MaxEntries || shoff + (shnum * shentsize) > elf.Length)
            {
                throw new ElfFormatException(name + ": section header table (" + shnum + " entries at " + shoff + ") does not fit in the file.");
            }

            var sections = new Section[shnum];
            for (long i = 0; i < shnum; i++)
            {
                long h = shoff + (i * shentsize);
                var s = new Section
                {
                    Type = U32(elf, h + 4),
                    Offset = (long)U64(elf, h + 24),
                    Size = (long)U64(elf, h + 32),
                    Link = U32(elf, h + 40),
                    Info = U32(elf, h + 44),
                    EntSize = (long)U64(elf, h + 56),
                };
                bool occupiesFile = s.Type != 8 && s.Type != 0; // SHT_NOBITS, SHT_NULL
                if (occupiesFile && (s.Offset < 0 || s.Size < 0 || s.Offset > elf.Length || s.Size > elf.Length - s.Offset))
                {
                    throw new ElfFormatException(name + ": section " + i + " (type 0x" + s.Type.ToString("x") + ") lies outside the file.");
                }

                sections[i] = s;
            }

            return sections;
        }

        private static Section LinkedStringTable(Section[] sections, Section owner, string name, string what)
        {
            if (owner.Link == 0 || owner.Link >= sections.Length || sections[owner.Link].Type != ShtStrtab)
            {
                throw new ElfFormatException(name + ": " + what + " does not link (sh_link=" + owner.Link + ") to a string table.");
            }

            return sections[owner.Link];
        }

        private static void CheckRange(byte[] elf, long offset, int length, Section section, string name, string what)
        {
            if (offset < section.Offset || offset + length > section.Offset + section.Size || offset + length > elf.Length)
            {
                throw new ElfFormatException(name + ": " + what + " at offset " + offset + " lies outside its section.");
            }
        }

        private static string ReadString(byte[] elf, Section strtab, uint index, string name)
        {
            long start = strtab.Offset + index;
            long end = strtab.Offset + strtab.Size;
            if (index >= strtab.Size) throw new ElfFormatException(name + ": string index " + index + " is outside its string table.");
            long stop = start;
            while (stop < end && elf[stop] != 0) stop++;
            if (stop == end) throw new ElfFormatException(name + ": string at index " + index + " is not NUL-terminated.");
            return Encoding.ASCII.GetString(elf, (int)start, (int)(stop - start));
        }

        private static ushort U16(byte[] b, long o)
        {
            if (o < 0 || o + 2 > b.Length) throw new ElfFormatException("read past the end of the ELF file at offset " + o + ".");
            return (ushort)(b[o] | (b[o + 1] << 8));
        }

        private static uint U32(byte[] b, long o)
        {
            if (o < 0 || o + 4 > b.Length) throw new ElfFormatException("read past the end of the ELF file at offset " + o + ".");
            return (uint)(b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24));
        }

        private static ulong U64(byte[] b, long o) => U32(b, o) | ((ulong)U32(b, o + 4) << 32);
    }
}

#if !SPECDECODE_ELF_PATCH_NO_TASK
namespace SpecDecode.Build
{
    using Microsoft.Build.Framework;
    using Microsoft.Build.Utilities;

    /// <summary>
    /// MSBuild task: weakens the GLIBCXX_3.4.32 need of the given copies of libLibTorchSharp.so (in an output or
    /// publish folder). Mode: auto (only when the system libstdc++ lacks GLIBCXX_3.4.32), always, or off.
    /// A no-op on non-Linux build hosts.
    /// </summary>
    public sealed class WeakenLibTorchSharpGlibcxx : Task
    {
        /// <summary>The copies to patch; missing files are skipped.</summary>
        [Required]
        public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>auto, always or off.</summary>
        public string Mode { get; set; } = "auto";

        /// <inheritdoc />
        public override bool Execute()
        {
            string mode = (Mode ?? "auto").Trim().ToLowerInvariant();
            if (mode == "off" || mode == "false")
            {
                Log.LogMessage(MessageImportance.Low, "SpecDecodeLibTorchSharpGlibcxxFix=off: libLibTorchSharp.so left as it is.");
                return true;
            }

            if (mode != "auto" && mode != "always" && mode != "true")
            {
                Log.LogError(null, "SDTS003", null, null, 0, 0, 0, 0,
                    "SpecDecodeLibTorchSharpGlibcxxFix must be auto, always or off, not '" + Mode + "'.");
                return false;
            }

            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            {
                Log.LogMessage(MessageImportance.Low, "Not building on Linux: libLibTorchSharp.so left as it is.");
                return true;
            }

            string reason = "SpecDecodeLibTorchSharpGlibcxxFix=always";
            if (mode == "auto")
            {
                reason = "the libstdc++ of this system lacks it";
                string? libstdcxx = ElfVersionPatch.FindSystemLibStdCxx();
                if (!ElfVersionPatch.SystemNeedsWeakening(libstdcxx))
                {
                    Log.LogMessage(MessageImportance.Low, libstdcxx + " provides " + ElfVersionPatch.Glibcxx3432 + ": libLibTorchSharp.so left as it is.");
                    return true;
                }
            }

            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (ITaskItem item in Files)
            {
                string path = Path.GetFullPath(item.ItemSpec);
                if (!seen.Add(path)) continue;
                if (!File.Exists(path))
                {
                    Log.LogMessage(MessageImportance.Low, path + " does not exist: skipped.");
                    continue;
                }

                try
                {
                    WeakenOutcome outcome = ElfVersionPatch.WeakenGlibcxx3432(path);
                    if (outcome == WeakenOutcome.Patched)
                    {
                        Log.LogMessage(MessageImportance.High,
                            "Marked the " + ElfVersionPatch.Glibcxx3432 + " need of " + path + " weak (" + reason + "; see docs/torchsharp-on-debian12.md).");
                    }
                    else
                    {
                        Log.LogMessage(MessageImportance.Low, path + ": " + outcome + ".");
                    }
                }
                catch (ElfFormatException e)
                {
                    Log.LogError(null, "SDTS001", null, path, 0, 0, 0, 0, "Cannot patch libLibTorchSharp.so: " + e.Message);
                }
                catch (InvalidOperationException e)
                {
                    Log.LogError(null, "SDTS002", null, path, 0, 0, 0, 0, "Refusing to patch libLibTorchSharp.so: " + e.Message);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogError(null, "SDTS004", null, path, 0, 0, 0, 0, "Cannot rewrite libLibTorchSharp.so: " + e.Message);
                }
            }

            return !Log.HasLoggedErrors;
        }
    }
}
#endif
