//! The ELF structure check ([`plugbus_host::elf::check`]) over corrupted copies of a real
//! plugin library: each damage is refused before the dynamic loader sees the file, with a
//! message that names it, and through the loader as a `LoadError` (the host goes on).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plugbus_host::elf::{check, ElfError};
use plugbus_host::{LoadErrorKind, TrustPolicy};
use plugbus_tests::{crates, PluginDir};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_RELA: u64 = 7;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A 64-bit little-endian plugin library, as built, with where its tables are.
struct Lib {
    bytes: Vec<u8>,
    phoff: usize,
    phnum: usize,
}

impl Lib {
    fn load() -> Option<Lib> {
        let bytes = std::fs::read(plugbus_tests::built_library(crates::FAILER)).unwrap();
        if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
            eprintln!("skipped: not a 64-bit little-endian ELF host");
            return None;
        }
        let phoff = u64_at(&bytes, 0x20) as usize;
        let phnum = usize::from(u16_at(&bytes, 0x38));
        Some(Lib {
            bytes,
            phoff,
            phnum,
        })
    }

    fn ph(&self, i: usize) -> usize {
        self.phoff + i * 56
    }

    /// (index, p_offset, p_vaddr, p_filesz) of each program header of `kind`.
    fn segments(&self, kind: u32) -> Vec<(usize, u64, u64, u64)> {
        (0..self.phnum)
            .filter(|&i| u32_at(&self.bytes, self.ph(i)) == kind)
            .map(|i| {
                let h = self.ph(i);
                (
                    i,
                    u64_at(&self.bytes, h + 8),
                    u64_at(&self.bytes, h + 16),
                    u64_at(&self.bytes, h + 32),
                )
            })
            .collect()
    }

    /// File offsets of the dynamic entries, with their tags.
    fn dynamic(&self) -> Vec<(usize, u64)> {
        let (_, offset, _, size) = self.segments(PT_DYNAMIC)[0];
        (0..size as usize / 16)
            .map(|n| {
                let at = offset as usize + n * 16;
                (at, u64_at(&self.bytes, at))
            })
            .collect()
    }

    fn vaddr_to_offset(&self, addr: u64) -> usize {
        self.segments(PT_LOAD)
            .into_iter()
            .find(|&(_, _, v, s)| addr >= v && addr < v + s)
            .map(|(_, o, v, _)| (o + (addr - v)) as usize)
            .unwrap()
    }
}

#[test]
fn the_built_plugin_passes() {
    let Some(lib) = Lib::load() else { return };
    check(&lib.bytes).unwrap();
}

#[test]
fn a_loadable_segment_cut_short_is_named_with_its_end_and_the_file_size() {
    let Some(lib) = Lib::load() else { return };
    let (i, offset, _, filesz) = *lib.segments(PT_LOAD).last().unwrap();
    let end = offset + filesz;
    let cut = &lib.bytes[..(end - 1) as usize];
    // Any earlier segment that also ends past the cut is named first.
    let first = lib
        .segments(PT_LOAD)
        .into_iter()
        .chain(lib.segments(PT_DYNAMIC))
        .filter(|&(_, o, _, s)| o + s > cut.len() as u64)
        .map(|(n, ..)| n)
        .min()
        .unwrap();
    let err = check(cut).unwrap_err();
    assert!(matches!(err, ElfError::Truncated(_)), "{err}");
    if first == i {
        assert_eq!(
            err.to_string(),
            format!(
                "program header {i} (PT_LOAD) ends at byte {end}, past the end of the file ({} bytes)",
                cut.len()
            )
        );
    } else {
        assert!(
            err.to_string()
                .starts_with(&format!("program header {first} (")),
            "{err}"
        );
    }
}

#[test]
fn a_library_for_another_machine_names_both() {
    let Some(mut lib) = Lib::load() else { return };
    let (other, name) = if std::env::consts::ARCH == "aarch64" {
        (62u16, "x86_64")
    } else {
        (183u16, "aarch64")
    };
    lib.bytes[0x12..0x14].copy_from_slice(&other.to_le_bytes());
    let err = check(&lib.bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("built for {name}, this host is {}", std::env::consts::ARCH)
    );

    // Through the loader: its own kind, worded as such, and nothing mapped.
    let dir = PluginDir::new();
    let path = dir.write("libother.so", &lib.bytes, 0o644);
    let err =
        plugbus_host::loader::load_library(&TrustPolicy::new([dir.path().to_path_buf()]), &path)
            .unwrap_err();
    assert!(
        matches!(err.kind, LoadErrorKind::NotLoadable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!(
            "not a shared library this host can load: built for {name}"
        )),
        "{err}"
    );
}

#[test]
fn header_damage_is_named() {
    let Some(lib) = Lib::load() else { return };
    let mut b = lib.bytes.clone();
    b[0x36] = 57; // e_phentsize
    assert_eq!(
        check(&b).unwrap_err().to_string(),
        "program header entries are 57 bytes, expected 56"
    );

    let mut b = lib.bytes.clone();
    b[0x10] = 1; // ET_REL
    assert_eq!(
        check(&b).unwrap_err().to_string(),
        "the ELF type is ET_REL (an object file), not a shared object (ET_DYN)"
    );

    let mut b = lib.bytes.clone();
    let len = b.len() as u64;
    put_u64(&mut b, 0x20, len - 56); // e_phoff: the table runs off the end
    let err = check(&b).unwrap_err();
    assert!(matches!(err, ElfError::Truncated(_)), "{err}");
    assert!(
        err.to_string().starts_with("the program header table (")
            && err
                .to_string()
                .ends_with(&format!("past the end of the file ({len} bytes)")),
        "{err}"
    );

    let mut b = lib.bytes.clone();
    put_u64(&mut b, 0x28, len - 10); // e_shoff
    let err = check(&b).unwrap_err();
    assert!(
        err.to_string().starts_with("the section header table ("),
        "{err}"
    );
}

#[test]
fn program_header_damage_is_named() {
    let Some(lib) = Lib::load() else { return };
    let (d, ..) = lib.segments(PT_DYNAMIC)[0];
    let mut b = lib.bytes.clone();
    b[lib.ph(d)..lib.ph(d) + 4].copy_from_slice(&0u32.to_le_bytes()); // PT_DYNAMIC -> PT_NULL
    assert_eq!(
        check(&b).unwrap_err().to_string(),
        "no dynamic section (PT_DYNAMIC): not a dynamically linked shared library"
    );

    // The dynamic section's address moved out of every loadable segment.
    let mut b = lib.bytes.clone();
    put_u64(&mut b, lib.ph(d) + 16, 0x7fff_0000_0000);
    let err = check(&b).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "the dynamic section (program header {d}, address 0x7fff00000000"
        )) && err.ends_with("lies outside every loadable segment"),
        "{err}"
    );

    // Loadable segments out of order.
    let loads = lib.segments(PT_LOAD);
    let (second, ..) = loads[1];
    let mut b = lib.bytes.clone();
    put_u64(&mut b, lib.ph(second) + 16, 0); // p_vaddr
    put_u64(&mut b, lib.ph(second) + 8, 0); // p_offset, keeping them congruent
    let err = check(&b).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "program header {second} (PT_LOAD) at address 0x0 overlaps"
        )),
        "{err}"
    );
}

#[test]
fn dynamic_section_damage_is_named() {
    let Some(lib) = Lib::load() else { return };
    let entries = lib.dynamic();

    let (at, _) = *entries.iter().find(|(_, t)| *t == DT_STRTAB).unwrap();
    let index = entries.iter().position(|(a, _)| *a == at).unwrap();
    let mut b = lib.bytes.clone();
    put_u64(&mut b, at + 8, 0xdead_0000_0000);
    assert_eq!(
        check(&b).unwrap_err().to_string(),
        format!(
            "dynamic entry {index} (DT_STRTAB) holds address 0xdead00000000, outside every \
             loadable segment"
        )
    );

    // No terminator: every DT_NULL becomes an unknown (ignored) tag.
    let mut b = lib.bytes.clone();
    for (at, tag) in &entries {
        if *tag == DT_NULL {
            put_u64(&mut b, *at, 0x6000_0001);
        }
    }
    assert_eq!(
        check(&b).unwrap_err().to_string(),
        "the dynamic section does not end with a DT_NULL entry"
    );

    // A relocation that would write far outside the library.
    if let Some((at, _)) = entries.iter().find(|(_, t)| *t == DT_RELA) {
        let rela = lib.vaddr_to_offset(u64_at(&lib.bytes, at + 8));
        let mut b = lib.bytes.clone();
        put_u64(&mut b, rela, 0x4000_0000_0000);
        assert_eq!(
            check(&b).unwrap_err().to_string(),
            "relocation 0 of DT_RELA writes at address 0x400000000000, outside every loadable \
             segment"
        );
    }
}

/// Every byte of the ELF header, the program headers and the dynamic section flipped in turn
/// (3 bits each): the check never panics, refuses every flip of the identification, type,
/// machine and entry size fields, and says why for each refusal. Flips it lets through (in
/// fields the loader ignores, or values still in range) are the probe's to map first
/// (host/tests/probe.rs sweeps such files through the binary).
#[test]
fn a_bit_flip_sweep_never_panics_the_check_and_refuses_the_fields_that_matter() {
    let Some(lib) = Lib::load() else { return };
    let (_, dyn_off, _, dyn_size) = lib.segments(PT_DYNAMIC)[0];
    let ranges = [
        0..64,
        lib.phoff..lib.phoff + lib.phnum * 56,
        dyn_off as usize..(dyn_off + dyn_size) as usize,
    ];
    let must_refuse = |at: usize| matches!(at, 4..=6 | 0x10..=0x13 | 0x36..=0x37);
    let (mut refused, mut passed) = (0, 0);
    for range in ranges {
        for at in range {
            for bit in [0u8, 3, 7] {
                let mut b = lib.bytes.clone();
                b[at] ^= 1 << bit;
                match check(&b) {
                    Ok(()) => {
                        assert!(!must_refuse(at), "a flip of bit {bit} at byte {at} passed");
                        passed += 1;
                    }
                    Err(e) => {
                        assert!(!e.to_string().is_empty());
                        refused += 1;
                    }
                }
            }
        }
    }
    eprintln!("{refused} refused, {passed} passed the structural check");
    assert!(refused > 0);
}
