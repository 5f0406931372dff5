using System.Text;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// Builds a minimal ELF64 little-endian shared object with .dynstr, .dynsym, .gnu.version and .gnu.version_r,
/// so that the patcher is tested on layouts the real library does not have.
/// </summary>
internal static class SyntheticElf
{
    /// <param name="needs">per needed library, its version names; version indices are given from 2 upward in this order</param>
    /// <param name="undefinedSymbols">undefined symbols and the version name each needs</param>
    public static byte[] Build((string Library, string[] Versions)[] needs, (string Symbol, string Version)[] undefinedSymbols)
    {
        var dynstr = new MemoryStream();
        dynstr.WriteByte(0);
        var strings = new Dictionary<string, uint>();
        uint Str(string s)
        {
            if (!strings.TryGetValue(s, out uint at))
            {
                at = (uint)dynstr.Length;
                byte[] b = Encoding.ASCII.GetBytes(s);
                dynstr.Write(b);
                dynstr.WriteByte(0);
                strings[s] = at;
            }

            return at;
        }

        // .gnu.version_r
        var verneed = new BinaryWriter(new MemoryStream());
        var index = new Dictionary<string, ushort>();
        ushort next = 2;
        for (int n = 0; n < needs.Length; n++)
        {
            var (library, versions) = needs[n];
            verneed.Write((ushort)1);                                  // vn_version
            verneed.Write((ushort)versions.Length);                    // vn_cnt
            verneed.Write(Str(library));                               // vn_file
            verneed.Write(16u);                                        // vn_aux: right after this entry
            verneed.Write(n == needs.Length - 1 ? 0u : (uint)(16 + (16 * versions.Length))); // vn_next
            for (int v = 0; v < versions.Length; v++)
            {
                index[versions[v]] = next;
                verneed.Write(0x0u);                                   // vna_hash (not checked by the patcher)
                verneed.Write((ushort)0);                              // vna_flags
                verneed.Write(next++);                                 // vna_other
                verneed.Write(Str(versions[v]));                       // vna_name
                verneed.Write(v == versions.Length - 1 ? 0u : 16u);    // vna_next
            }
        }

        // .dynsym (entry 0 is the null symbol) and .gnu.version
        var dynsym = new BinaryWriter(new MemoryStream());
        var versym = new BinaryWriter(new MemoryStream());
        dynsym.Write(new byte[24]);
        versym.Write((ushort)0);
        foreach (var (symbol, version) in undefinedSymbols)
        {
            dynsym.Write(Str(symbol));
            dynsym.Write((byte)0x12); // STB_GLOBAL, STT_FUNC
            dynsym.Write((byte)0);
            dynsym.Write((ushort)0);  // SHN_UNDEF
            dynsym.Write(0UL);
            dynsym.Write(0UL);
            versym.Write(index[version]);
        }

        return Assemble(
        [
            (3, 0, 0, 0, dynstr.ToArray()),                                                       // 1: .dynstr  SHT_STRTAB
            (11, 1, 1, 24, ((MemoryStream)dynsym.BaseStream).ToArray()),                          // 2: .dynsym  SHT_DYNSYM
            (0x6fffffff, 2, 0, 2, ((MemoryStream)versym.BaseStream).ToArray()),                   // 3: .gnu.version    SHT_GNU_versym
            (0x6ffffffe, 1, (uint)needs.Length, 0, ((MemoryStream)verneed.BaseStream).ToArray()), // 4: .gnu.version_r  SHT_GNU_verneed
        ]);
    }

    /// <summary>A stand-in for a libstdc++.so.6 that defines <paramref name="versions"/> in .gnu.version_d.</summary>
    public static byte[] BuildLibrary(string soname, string[] versions)
    {
        var dynstr = new MemoryStream();
        dynstr.WriteByte(0);
        uint Str(string s)
        {
            uint at = (uint)dynstr.Length;
            dynstr.Write(Encoding.ASCII.GetBytes(s));
            dynstr.WriteByte(0);
            return at;
        }

        string[] names = [soname, .. versions]; // index 1 is the file itself (VER_FLG_BASE)
        var verdef = new BinaryWriter(new MemoryStream());
        for (int i = 0; i < names.Length; i++)
        {
            verdef.Write((ushort)1);                              // vd_version
            verdef.Write((ushort)(i == 0 ? 1 : 0));               // vd_flags
            verdef.Write((ushort)(i + 1));                        // vd_ndx
            verdef.Write((ushort)1);                              // vd_cnt
            verdef.Write(0u);                                     // vd_hash
            verdef.Write(20u);                                    // vd_aux
            verdef.Write(i == names.Length - 1 ? 0u : 28u);       // vd_next
            verdef.Write(Str(names[i]));                          // vda_name
            verdef.Write(0u);                                     // vda_next
        }

        return Assemble(
        [
            (3, 0, 0, 0, dynstr.ToArray()),                                                        // 1: .dynstr
            (0x6ffffffd, 1, (uint)names.Length, 0, ((MemoryStream)verdef.BaseStream).ToArray()),   // 2: .gnu.version_d  SHT_GNU_verdef
        ]);
    }

    private static byte[] Assemble((uint Type, uint Link, uint Info, ulong EntSize, byte[] Body)[] sections)
    {
        var file = new BinaryWriter(new MemoryStream());
        file.Write(new byte[64]);
        var offsets = new long[sections.Length];
        for (int i = 0; i < sections.Length; i++)
        {
            while (file.BaseStream.Length % 8 != 0) file.Write((byte)0);
            offsets[i] = file.BaseStream.Length;
            file.Write(sections[i].Body);
        }

        while (file.BaseStream.Length % 8 != 0) file.Write((byte)0);
        long shoff = file.BaseStream.Length;
        file.Write(new byte[64]); // section 0: SHT_NULL
        for (int i = 0; i < sections.Length; i++)
        {
            file.Write(0u);                     // sh_name (no .shstrtab: the patcher goes by type)
            file.Write(sections[i].Type);
            file.Write(0UL);                    // sh_flags
            file.Write(0UL);                    // sh_addr
            file.Write((ulong)offsets[i]);
            file.Write((ulong)sections[i].Body.Length);
            file.Write(sections[i].Link);
            file.Write(sections[i].Info);
            file.Write(8UL);                    // sh_addralign
            file.Write(sections[i].EntSize);
        }

        byte[] elf = ((MemoryStream)file.BaseStream).ToArray();
        byte[] ident = { 0x7f, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1 };
        ident.CopyTo(elf, 0);
        BitConverter.GetBytes((ushort)3).CopyTo(elf, 0x10);            // e_type ET_DYN
        BitConverter.GetBytes((ushort)62).CopyTo(elf, 0x12);           // e_machine EM_X86_64
        BitConverter.GetBytes(1u).CopyTo(elf, 0x14);                   // e_version
        BitConverter.GetBytes((ulong)shoff).CopyTo(elf, 0x28);         // e_shoff
        BitConverter.GetBytes((ushort)64).CopyTo(elf, 0x34);           // e_ehsize
        BitConverter.GetBytes((ushort)64).CopyTo(elf, 0x3a);           // e_shentsize
        BitConverter.GetBytes((ushort)(sections.Length + 1)).CopyTo(elf, 0x3c); // e_shnum
        return elf;
    }
}
