//! The ELF structure of a plugin file, checked on its bytes before the dynamic loader sees them.
//!
//! # Why
//!
//! Mapping a library hands its headers to `ld.so`, which trusts them: a damaged file can crash
//! `ld.so` itself ("Inconsistency detected by ld.so"), make it apply relocations through a
//! bit-flipped dynamic section and `SIGSEGV`, or map a segment that lies past the end of the
//! file, which *succeeds* (whole pages are mapped) and kills the process with `SIGBUS` when it
//! touches the missing page, perhaps much later. The admission probe ([`crate::probe`]) maps a
//! new file first in a child process and is the second line of defence: it catches what no
//! structural check can (a constructor that crashes or hangs). This check is the first: it
//! refuses most damage at once, with a message that names it, also in an embedding application
//! that runs without the probe.
//!
//! # What is demanded
//!
//! The parsing is the `object` crate's (well kept and fuzzed); what a library must satisfy to
//! be handed to the dynamic loader is decided here:
//! - the ELF class and byte order of the host (64-bit little-endian on x86_64 and aarch64), the
//!   current ELF version, type `ET_DYN` (a shared object), the host's machine;
//! - a program header table of entries of the right size, inside the file; every segment's
//!   bytes inside the file; loadable (`PT_LOAD`) segments in ascending, non-overlapping address
//!   order, each no larger on file than in memory, offset and address congruent modulo its
//!   alignment (the loader reserves one range for all of them and maps each at a fixed place in
//!   it: out-of-order or overlapping segments could be mapped over other memory);
//! - exactly one `PT_DYNAMIC`, inside a loadable segment and at the same place in the file as
//!   in memory (so the entries checked here are the ones `ld.so` reads); its entries end with
//!   `DT_NULL`; every address they hold lies inside a loadable segment, every table they name
//!   (strings, symbols' hash, relocations, initializer arrays) lies within the file-backed part
//!   of one loadable segment, entry sizes are the class's, string offsets are inside the string
//!   table, and every relocation's target lies inside a loadable segment;
//! - the section header table, if there is one, inside the file with entries of the right size
//!   (the loader does not read it, debuggers and tools do).
//!
//! Mach-O files are not checked here (the caller leaves them to the dynamic loader).

// ELF words are `u64` on 64-bit hosts and `u32` on 32-bit ones: the `.into()`s that widen them
// are conversions to the same type on the first.
#![allow(clippy::useless_conversion)]

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _, Rel as _, Rela as _};
use object::{Endianness, ReadRef as _};

/// The ELF header type of the host's class.
#[cfg(target_pointer_width = "64")]
type HostElf = elf::FileHeader64<Endianness>;
/// The ELF header type of the host's class.
#[cfg(not(target_pointer_width = "64"))]
type HostElf = elf::FileHeader32<Endianness>;

type ProgramHeader = <HostElf as FileHeader>::ProgramHeader;
type SectionHeader = <HostElf as FileHeader>::SectionHeader;
type Dyn = <HostElf as FileHeader>::Dyn;
type Rela = <HostElf as FileHeader>::Rela;
type Rel = <HostElf as FileHeader>::Rel;
type Sym = <HostElf as FileHeader>::Sym;

/// Why an ELF file is refused before it is mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// A well-formed ELF file this host cannot load: another class, byte order or machine, or
    /// not a shared object (an executable, an object file).
    #[error("{0}")]
    NotForThisHost(String),
    /// A header, table or segment ends past the end of the file.
    #[error("{0}")]
    Truncated(String),
    /// A header or table holds values no working library has.
    #[error("{0}")]
    Malformed(String),
}

use ElfError::{Malformed, NotForThisHost, Truncated};

/// Checks that `bytes` are an ELF shared library the dynamic loader of this host can map
/// without trusting anything it has not been shown to be inside the file (see the module
/// docs for the list).
///
/// # Errors
/// The first problem found, worded for a person: "program header 3 (PT_LOAD) ends at byte
/// 20480, past the end of the file (16384 bytes)", "built for aarch64, this host is x86_64".
pub fn check(bytes: &[u8]) -> Result<(), ElfError> {
    let len = bytes.len() as u64;
    check_ident(bytes)?;
    let header = HostElf::parse(bytes).map_err(|_| {
        Truncated(format!(
            "the file is {len} bytes, too short for the ELF header ({} bytes)",
            std::mem::size_of::<HostElf>()
        ))
    })?;
    let endian = header
        .endian()
        .map_err(|e| Malformed(format!("ELF byte order: {e}")))?;
    if header.e_version(endian) != u32::from(elf::EV_CURRENT.0) {
        return Err(Malformed(format!(
            "ELF header version is {}, expected 1",
            header.e_version(endian)
        )));
    }
    let e_type = header.e_type(endian);
    if e_type != elf::ET_DYN {
        return Err(NotForThisHost(format!(
            "the ELF type is {}, not a shared object (ET_DYN)",
            file_type_name(e_type)
        )));
    }
    if let Some(host) = host_machine() {
        let machine = header.e_machine(endian);
        if machine != host {
            return Err(NotForThisHost(format!(
                "built for {}, this host is {}",
                machine_name(machine),
                std::env::consts::ARCH
            )));
        }
    }
    let segments = check_program_headers(header, endian, bytes)?;
    check_dynamic(&segments, endian, bytes)?;
    check_section_headers(header, endian, bytes)
}

/// Class, byte order and version in `e_ident`, against the host's.
fn check_ident(bytes: &[u8]) -> Result<(), ElfError> {
    let len = bytes.len();
    let Some(ident) = bytes.get(..16) else {
        return Err(Truncated(format!(
            "the file is {len} bytes, too short for an ELF identification (16 bytes)"
        )));
    };
    if ident.get(..4) != Some(elf::ELFMAG.as_slice()) {
        return Err(Malformed("no ELF magic number".to_owned()));
    }
    let class = ident.get(4).copied().unwrap_or_default();
    let wide = match elf::FileClass(class) {
        elf::ELFCLASS32 => false,
        elf::ELFCLASS64 => true,
        _ => {
            return Err(Malformed(format!(
                "ELF class byte is {class}, neither 1 (32-bit) nor 2 (64-bit)"
            )))
        }
    };
    let host_wide = cfg!(target_pointer_width = "64");
    if wide != host_wide {
        return Err(NotForThisHost(format!(
            "a {}-bit ELF file, this host is {}-bit",
            if wide { 64 } else { 32 },
            if host_wide { 64 } else { 32 }
        )));
    }
    let data = ident.get(5).copied().unwrap_or_default();
    let little = match elf::DataEncoding(data) {
        elf::ELFDATA2LSB => true,
        elf::ELFDATA2MSB => false,
        _ => {
            return Err(Malformed(format!(
                "ELF byte order byte is {data}, neither 1 (little-endian) nor 2 (big-endian)"
            )))
        }
    };
    let host_little = cfg!(target_endian = "little");
    if little != host_little {
        let word = |l: bool| if l { "little-endian" } else { "big-endian" };
        return Err(NotForThisHost(format!(
            "a {} ELF file, this host is {}",
            word(little),
            word(host_little)
        )));
    }
    let version = ident.get(6).copied().unwrap_or_default();
    if elf::FileVersion(version) != elf::EV_CURRENT {
        return Err(Malformed(format!(
            "ELF identification version is {version}, expected 1"
        )));
    }
    Ok(())
}

/// A loadable segment: where it is in memory (relative to the load address) and on file.
#[derive(Debug, Clone, Copy)]
struct Load {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

impl Load {
    /// `[addr, addr + size)` lies in this segment's memory.
    fn holds(&self, addr: u64, size: u64) -> bool {
        addr >= self.vaddr
            && addr
                .checked_add(size)
                .is_some_and(|end| end <= self.vaddr + self.memsz)
    }

    /// The file offset of `[addr, addr + size)`, if that range is in this segment's
    /// file-backed part.
    fn file_offset(&self, addr: u64, size: u64) -> Option<u64> {
        let end = addr.checked_add(size)?;
        (addr >= self.vaddr && end <= self.vaddr + self.filesz)
            .then(|| self.offset + (addr - self.vaddr))
    }
}

/// What the program headers say, once checked.
#[derive(Debug)]
struct Segments {
    loads: Vec<Load>,
    /// Index, address, file offset and size of the one `PT_DYNAMIC`.
    dynamic: (usize, u64, u64, u64),
}

impl Segments {
    fn in_memory(&self, addr: u64, size: u64) -> bool {
        self.loads.iter().any(|l| l.holds(addr, size))
    }

    fn file_offset(&self, addr: u64, size: u64) -> Option<u64> {
        self.loads.iter().find_map(|l| l.file_offset(addr, size))
    }
}

fn check_program_headers(
    header: &HostElf,
    endian: Endianness,
    bytes: &[u8],
) -> Result<Segments, ElfError> {
    let len = bytes.len() as u64;
    let phoff: u64 = header.e_phoff(endian).into();
    let phnum = header.e_phnum(endian);
    if phoff == 0 || phnum == 0 {
        return Err(Malformed(
            "no program headers: the loader would have nothing to map".to_owned(),
        ));
    }
    if phnum == elf::PN_XNUM {
        return Err(Malformed(
            "an extended program header count (e_phnum = 0xffff), which the loader does not \
             support"
                .to_owned(),
        ));
    }
    let entsize = usize::from(header.e_phentsize(endian));
    let expected = std::mem::size_of::<ProgramHeader>();
    if entsize != expected {
        return Err(Malformed(format!(
            "program header entries are {entsize} bytes, expected {expected}"
        )));
    }
    let table = u64::from(phnum) * expected as u64;
    match phoff.checked_add(table) {
        Some(end) if end <= len => {}
        end => {
            return Err(Truncated(format!(
                "the program header table ({phnum} entries from byte {phoff}) ends at byte {}, \
                 past the end of the file ({len} bytes)",
                end.map_or_else(|| "beyond 2^64".to_owned(), |e| e.to_string())
            )))
        }
    }
    let headers = header
        .program_headers(endian, bytes)
        .map_err(|e| Malformed(format!("program header table: {e}")))?;
    let mut loads: Vec<Load> = Vec::new();
    let mut dynamic = Vec::new();
    for (i, ph) in headers.iter().enumerate() {
        let kind = ph.p_type(endian);
        let offset: u64 = ph.p_offset(endian).into();
        let filesz: u64 = ph.p_filesz(endian).into();
        let vaddr: u64 = ph.p_vaddr(endian).into();
        let memsz: u64 = ph.p_memsz(endian).into();
        let align: u64 = ph.p_align(endian).into();
        let name = segment_name(kind);
        if filesz > 0 {
            match offset.checked_add(filesz) {
                Some(end) if end <= len => {}
                end => {
                    return Err(Truncated(format!(
                        "program header {i} ({name}) ends at byte {}, past the end of the file \
                         ({len} bytes)",
                        end.map_or_else(|| "beyond 2^64".to_owned(), |e| e.to_string())
                    )))
                }
            }
        }
        if kind == elf::PT_LOAD {
            if filesz > memsz {
                return Err(Malformed(format!(
                    "program header {i} (PT_LOAD) has {filesz} bytes on file but only {memsz} \
                     in memory"
                )));
            }
            let Some(end) = vaddr.checked_add(memsz) else {
                return Err(Malformed(format!(
                    "program header {i} (PT_LOAD) at address {vaddr:#x} with {memsz} bytes \
                     ends beyond the address space"
                )));
            };
            if align > 1 {
                if !align.is_power_of_two() {
                    return Err(Malformed(format!(
                        "program header {i} (PT_LOAD) has alignment {align:#x}, not a power of two"
                    )));
                }
                if vaddr % align != offset % align {
                    return Err(Malformed(format!(
                        "program header {i} (PT_LOAD): address {vaddr:#x} and file offset \
                         {offset:#x} differ modulo its alignment {align:#x}"
                    )));
                }
            }
            if let Some(previous) = loads.last() {
                if vaddr < previous.vaddr + previous.memsz {
                    return Err(Malformed(format!(
                        "program header {i} (PT_LOAD) at address {vaddr:#x} overlaps or precedes \
                         the loadable segment before it (ending at {:#x}): loadable segments \
                         must be in ascending address order",
                        previous.vaddr + previous.memsz
                    )));
                }
            }
            debug_assert!(end >= vaddr);
            loads.push(Load {
                vaddr,
                memsz,
                offset,
                filesz,
            });
        } else if kind == elf::PT_DYNAMIC {
            dynamic.push((i, vaddr, offset, filesz));
        }
    }
    if loads.is_empty() {
        return Err(Malformed(
            "no loadable segment (PT_LOAD): nothing to map".to_owned(),
        ));
    }
    let dynamic = match dynamic.as_slice() {
        [one] => *one,
        [] => {
            return Err(Malformed(
                "no dynamic section (PT_DYNAMIC): not a dynamically linked shared library"
                    .to_owned(),
            ))
        }
        more => {
            return Err(Malformed(format!(
                "{} dynamic sections (PT_DYNAMIC), expected one",
                more.len()
            )))
        }
    };
    Ok(Segments { loads, dynamic })
}

/// A table named by the dynamic section: its address tag and its size tag.
#[derive(Debug, Clone, Copy)]
struct Table {
    addr: Option<u64>,
    size: Option<u64>,
}

#[derive(Debug, Default)]
struct DynamicInfo {
    strtab: Option<Table>,
    symtab: Option<u64>,
    hash: Option<u64>,
    gnu_hash: Option<u64>,
    rela: Option<Table>,
    rel: Option<Table>,
    jmprel: Option<Table>,
    pltrel: Option<u64>,
    relr: Option<Table>,
    init_array: Option<Table>,
    fini_array: Option<Table>,
    preinit_array: Option<Table>,
    /// Entry index, tag and string offset of every entry naming a string.
    strings: Vec<(usize, elf::DynamicTag, u64)>,
}

fn set_addr(slot: &mut Option<Table>, addr: u64) {
    let table = slot.get_or_insert(Table {
        addr: None,
        size: None,
    });
    table.addr = Some(addr);
}

fn set_size(slot: &mut Option<Table>, size: u64) {
    let table = slot.get_or_insert(Table {
        addr: None,
        size: None,
    });
    table.size = Some(size);
}

fn check_dynamic(segments: &Segments, endian: Endianness, bytes: &[u8]) -> Result<(), ElfError> {
    let (index, vaddr, offset, filesz) = segments.dynamic;
    let entry = std::mem::size_of::<Dyn>() as u64;
    if filesz == 0 || filesz % entry != 0 {
        return Err(Malformed(format!(
            "the dynamic section (program header {index}) is {filesz} bytes, not a whole \
             number of {entry}-byte entries"
        )));
    }
    // ld.so reads the entries from memory: they must be the bytes checked here.
    match segments.file_offset(vaddr, filesz) {
        Some(at) if at == offset => {}
        Some(_) => {
            return Err(Malformed(format!(
                "the dynamic section (program header {index}) is at file offset {offset:#x} but \
                 its address {vaddr:#x} maps to another place in the file"
            )))
        }
        None => {
            return Err(Malformed(format!(
                "the dynamic section (program header {index}, address {vaddr:#x}, {filesz} \
                 bytes) lies outside every loadable segment"
            )))
        }
    }
    let count = usize::try_from(filesz / entry).unwrap_or(usize::MAX);
    let entries: &[Dyn] = bytes
        .read_slice_at(offset, count)
        .map_err(|()| Truncated("the dynamic section is past the end of the file".to_owned()))?;
    let mut info = DynamicInfo::default();
    let mut terminated = false;
    for (i, d) in entries.iter().enumerate() {
        let tag = d.d_tag(endian);
        let value: u64 = d.d_val(endian).into();
        let address = |value: u64| -> Result<u64, ElfError> {
            if segments.in_memory(value, 1) {
                Ok(value)
            } else {
                Err(Malformed(format!(
                    "dynamic entry {i} ({}) holds address {value:#x}, outside every loadable \
                     segment",
                    tag_name(tag)
                )))
            }
        };
        let expect_size = |expected: usize| -> Result<(), ElfError> {
            if value == expected as u64 {
                Ok(())
            } else {
                Err(Malformed(format!(
                    "dynamic entry {i} ({}) says entries are {value} bytes, expected {expected}",
                    tag_name(tag)
                )))
            }
        };
        match tag {
            elf::DT_NULL => {
                terminated = true;
                break;
            }
            elf::DT_STRTAB => set_addr(&mut info.strtab, address(value)?),
            elf::DT_STRSZ => set_size(&mut info.strtab, value),
            elf::DT_SYMTAB => info.symtab = Some(address(value)?),
            elf::DT_HASH => info.hash = Some(address(value)?),
            elf::DT_GNU_HASH => info.gnu_hash = Some(address(value)?),
            elf::DT_RELA => set_addr(&mut info.rela, address(value)?),
            elf::DT_RELASZ => set_size(&mut info.rela, value),
            elf::DT_REL => set_addr(&mut info.rel, address(value)?),
            elf::DT_RELSZ => set_size(&mut info.rel, value),
            elf::DT_JMPREL => set_addr(&mut info.jmprel, address(value)?),
            elf::DT_PLTRELSZ => set_size(&mut info.jmprel, value),
            elf::DT_PLTREL => info.pltrel = Some(value),
            elf::DT_RELR => set_addr(&mut info.relr, address(value)?),
            elf::DT_RELRSZ => set_size(&mut info.relr, value),
            elf::DT_INIT_ARRAY => set_addr(&mut info.init_array, address(value)?),
            elf::DT_INIT_ARRAYSZ => set_size(&mut info.init_array, value),
            elf::DT_FINI_ARRAY => set_addr(&mut info.fini_array, address(value)?),
            elf::DT_FINI_ARRAYSZ => set_size(&mut info.fini_array, value),
            elf::DT_PREINIT_ARRAY => set_addr(&mut info.preinit_array, address(value)?),
            elf::DT_PREINIT_ARRAYSZ => set_size(&mut info.preinit_array, value),
            elf::DT_INIT
            | elf::DT_FINI
            | elf::DT_PLTGOT
            | elf::DT_VERSYM
            | elf::DT_VERDEF
            | elf::DT_VERNEED => {
                address(value)?;
            }
            elf::DT_RELAENT => expect_size(std::mem::size_of::<Rela>())?,
            elf::DT_RELENT => expect_size(std::mem::size_of::<Rel>())?,
            elf::DT_SYMENT => expect_size(std::mem::size_of::<Sym>())?,
            elf::DT_NEEDED | elf::DT_SONAME | elf::DT_RPATH | elf::DT_RUNPATH => {
                info.strings.push((i, tag, value));
            }
            _ => {}
        }
    }
    if !terminated {
        return Err(Malformed(
            "the dynamic section does not end with a DT_NULL entry".to_owned(),
        ));
    }
    check_tables(segments, endian, bytes, &info)
}

/// The tables the dynamic section names, and what is in them that the loader follows.
fn check_tables(
    segments: &Segments,
    endian: Endianness,
    bytes: &[u8],
    info: &DynamicInfo,
) -> Result<(), ElfError> {
    let missing = |what: &str| Malformed(format!("the dynamic section has no {what}"));
    let strtab = info
        .strtab
        .ok_or_else(|| missing("string table (DT_STRTAB)"))?;
    if info.symtab.is_none() {
        return Err(missing("symbol table (DT_SYMTAB)"));
    }
    if info.hash.is_none() && info.gnu_hash.is_none() {
        return Err(missing("symbol hash table (DT_HASH or DT_GNU_HASH)"));
    }
    // Each table: its address and size tags both present, the whole range file-backed.
    let place = |table: Option<Table>, what: &str| -> Result<Option<(u64, u64)>, ElfError> {
        let Some(Table { addr, size }) = table else {
            return Ok(None);
        };
        let (addr, size) = match (addr, size) {
            (Some(addr), Some(size)) => (addr, size),
            (Some(_), None) => {
                return Err(Malformed(format!("the {what} has an address but no size")))
            }
            (None, _) => return Err(Malformed(format!("the {what} has a size but no address"))),
        };
        match segments.file_offset(addr, size) {
            Some(offset) => Ok(Some((offset, size))),
            None => Err(Malformed(format!(
                "the {what} (address {addr:#x}, {size} bytes) does not lie within the file-backed \
                 part of one loadable segment"
            ))),
        }
    };
    let (str_offset, str_size) = place(Some(strtab), "string table (DT_STRTAB)")?
        .ok_or_else(|| missing("string table (DT_STRTAB)"))?;
    let strings = bytes
        .read_bytes_at(str_offset, str_size)
        .map_err(|()| Truncated("the string table is past the end of the file".to_owned()))?;
    for &(i, tag, at) in &info.strings {
        let named = usize::try_from(at)
            .ok()
            .and_then(|at| strings.get(at..))
            .and_then(|rest| rest.iter().position(|&b| b == 0));
        if named.is_none() {
            return Err(Malformed(format!(
                "dynamic entry {i} ({}) names the string at offset {at}, which does not end \
                 inside the string table ({str_size} bytes)",
                tag_name(tag)
            )));
        }
    }
    for (table, what) in [
        (info.init_array, "initializer array (DT_INIT_ARRAY)"),
        (info.fini_array, "finalizer array (DT_FINI_ARRAY)"),
        (
            info.preinit_array,
            "pre-initializer array (DT_PREINIT_ARRAY)",
        ),
        (info.relr, "relative relocation table (DT_RELR)"),
    ] {
        place(table, what)?;
    }
    if let Some((offset, size)) = place(info.rela, "relocation table (DT_RELA)")? {
        check_relocations::<Rela>(segments, bytes, offset, size, "DT_RELA", |r| {
            r.r_offset(endian).into()
        })?;
    }
    if let Some((offset, size)) = place(info.rel, "relocation table (DT_REL)")? {
        check_relocations::<Rel>(segments, bytes, offset, size, "DT_REL", |r| {
            r.r_offset(endian).into()
        })?;
    }
    if let Some((offset, size)) = place(info.jmprel, "PLT relocation table (DT_JMPREL)")? {
        match info.pltrel.map(|v| elf::DynamicTag(v as i64)) {
            Some(elf::DT_RELA) => {
                check_relocations::<Rela>(segments, bytes, offset, size, "DT_JMPREL", |r| {
                    r.r_offset(endian).into()
                })?
            }
            Some(elf::DT_REL) => {
                check_relocations::<Rel>(segments, bytes, offset, size, "DT_JMPREL", |r| {
                    r.r_offset(endian).into()
                })?
            }
            other => {
                return Err(Malformed(format!(
                    "the PLT relocation type (DT_PLTREL) is {}, neither DT_RELA nor DT_REL",
                    other.map_or_else(|| "missing".to_owned(), |t| t.0.to_string())
                )))
            }
        }
    }
    Ok(())
}

/// Every relocation of a table writes inside a loadable segment.
fn check_relocations<R: object::Pod>(
    segments: &Segments,
    bytes: &[u8],
    offset: u64,
    size: u64,
    what: &str,
    target: impl Fn(&R) -> u64,
) -> Result<(), ElfError> {
    let entry = std::mem::size_of::<R>() as u64;
    if size % entry != 0 {
        return Err(Malformed(format!(
            "the {what} relocation table is {size} bytes, not a whole number of {entry}-byte \
             entries"
        )));
    }
    let count = usize::try_from(size / entry).unwrap_or(usize::MAX);
    let relocations: &[R] = bytes.read_slice_at(offset, count).map_err(|()| {
        Truncated(format!(
            "the {what} relocation table is past the end of the file"
        ))
    })?;
    let word = std::mem::size_of::<<HostElf as FileHeader>::Word>() as u64;
    for (i, r) in relocations.iter().enumerate() {
        let at = target(r);
        if !segments.in_memory(at, word) {
            return Err(Malformed(format!(
                "relocation {i} of {what} writes at address {at:#x}, outside every loadable \
                 segment"
            )));
        }
    }
    Ok(())
}

fn check_section_headers(
    header: &HostElf,
    endian: Endianness,
    bytes: &[u8],
) -> Result<(), ElfError> {
    let len = bytes.len() as u64;
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff == 0 {
        return Ok(());
    }
    let shnum = header
        .shnum(endian, bytes)
        .map_err(|e| Malformed(format!("section header count: {e}")))?;
    if shnum == 0 {
        return Ok(());
    }
    let entsize = usize::from(header.e_shentsize(endian));
    let expected = std::mem::size_of::<SectionHeader>();
    if entsize != expected {
        return Err(Malformed(format!(
            "section header entries are {entsize} bytes, expected {expected}"
        )));
    }
    match shoff.checked_add(u64::from(shnum) * expected as u64) {
        Some(end) if end <= len => {}
        end => {
            return Err(Truncated(format!(
                "the section header table ({shnum} entries from byte {shoff}) ends at byte {}, \
                 past the end of the file ({len} bytes)",
                end.map_or_else(|| "beyond 2^64".to_owned(), |e| e.to_string())
            )))
        }
    }
    header
        .section_headers(endian, bytes)
        .map(|_| ())
        .map_err(|e| Malformed(format!("section header table: {e}")))
}

/// The ELF machine of the host, when this module knows it (otherwise the machine is left to
/// the loader).
fn host_machine() -> Option<elf::Machine> {
    Some(match std::env::consts::ARCH {
        "x86_64" => elf::EM_X86_64,
        "aarch64" => elf::EM_AARCH64,
        "x86" => elf::EM_386,
        "arm" => elf::EM_ARM,
        "riscv64" | "riscv32" => elf::EM_RISCV,
        "powerpc64" => elf::EM_PPC64,
        "powerpc" => elf::EM_PPC,
        "s390x" => elf::EM_S390,
        "loongarch64" => elf::EM_LOONGARCH,
        "mips" | "mips64" => elf::EM_MIPS,
        "sparc64" => elf::EM_SPARCV9,
        _ => return None,
    })
}

/// A machine as Rust names architectures ("x86_64", "aarch64"), or its number.
fn machine_name(machine: elf::Machine) -> String {
    match machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "x86",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "powerpc64",
        elf::EM_PPC => "powerpc",
        elf::EM_S390 => "s390x",
        elf::EM_LOONGARCH => "loongarch64",
        elf::EM_MIPS => "mips",
        elf::EM_SPARCV9 => "sparc64",
        other => return format!("ELF machine {}", other.0),
    }
    .to_owned()
}

fn file_type_name(t: elf::FileType) -> String {
    match t {
        elf::ET_NONE => "ET_NONE (no type)".to_owned(),
        elf::ET_REL => "ET_REL (an object file)".to_owned(),
        elf::ET_EXEC => "ET_EXEC (an executable)".to_owned(),
        elf::ET_CORE => "ET_CORE (a core dump)".to_owned(),
        other => format!("{:#x}", other.0),
    }
}

fn segment_name(t: elf::ProgramType) -> String {
    match t {
        elf::PT_NULL => "PT_NULL",
        elf::PT_LOAD => "PT_LOAD",
        elf::PT_DYNAMIC => "PT_DYNAMIC",
        elf::PT_INTERP => "PT_INTERP",
        elf::PT_NOTE => "PT_NOTE",
        elf::PT_PHDR => "PT_PHDR",
        elf::PT_TLS => "PT_TLS",
        elf::PT_GNU_EH_FRAME => "PT_GNU_EH_FRAME",
        elf::PT_GNU_STACK => "PT_GNU_STACK",
        elf::PT_GNU_RELRO => "PT_GNU_RELRO",
        elf::PT_GNU_PROPERTY => "PT_GNU_PROPERTY",
        other => return format!("type {:#x}", other.0),
    }
    .to_owned()
}

fn tag_name(t: elf::DynamicTag) -> String {
    match t {
        elf::DT_NEEDED => "DT_NEEDED",
        elf::DT_PLTRELSZ => "DT_PLTRELSZ",
        elf::DT_PLTGOT => "DT_PLTGOT",
        elf::DT_HASH => "DT_HASH",
        elf::DT_STRTAB => "DT_STRTAB",
        elf::DT_SYMTAB => "DT_SYMTAB",
        elf::DT_RELA => "DT_RELA",
        elf::DT_RELASZ => "DT_RELASZ",
        elf::DT_RELAENT => "DT_RELAENT",
        elf::DT_STRSZ => "DT_STRSZ",
        elf::DT_SYMENT => "DT_SYMENT",
        elf::DT_INIT => "DT_INIT",
        elf::DT_FINI => "DT_FINI",
        elf::DT_SONAME => "DT_SONAME",
        elf::DT_RPATH => "DT_RPATH",
        elf::DT_REL => "DT_REL",
        elf::DT_RELSZ => "DT_RELSZ",
        elf::DT_RELENT => "DT_RELENT",
        elf::DT_JMPREL => "DT_JMPREL",
        elf::DT_INIT_ARRAY => "DT_INIT_ARRAY",
        elf::DT_FINI_ARRAY => "DT_FINI_ARRAY",
        elf::DT_RUNPATH => "DT_RUNPATH",
        elf::DT_PREINIT_ARRAY => "DT_PREINIT_ARRAY",
        elf::DT_RELR => "DT_RELR",
        elf::DT_GNU_HASH => "DT_GNU_HASH",
        elf::DT_VERSYM => "DT_VERSYM",
        elf::DT_VERDEF => "DT_VERDEF",
        elf::DT_VERNEED => "DT_VERNEED",
        other => return format!("tag {:#x}", other.0),
    }
    .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The test binary itself: a position-independent executable is an `ET_DYN` ELF file
    /// with program headers, a dynamic section and relocations, like a plugin library.
    fn real_elf() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
        bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn the_test_binary_passes() {
        let bytes = real_elf();
        if bytes.get(16) != Some(&3) {
            eprintln!("skipped: the test binary is not position-independent (ET_DYN)");
            return;
        }
        check(&bytes).unwrap();
    }

    #[test]
    fn truncations_are_named() {
        let bytes = real_elf();
        for cut in [bytes.len() / 2, bytes.len() - 1, 100, 40, 10] {
            let err = check(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, Truncated(_)), "{cut}: {err}");
            assert!(
                err.to_string().contains("past the end") || err.to_string().contains("too short"),
                "{cut}: {err}"
            );
        }
    }

    #[test]
    fn another_machine_class_or_type_is_not_for_this_host() {
        let bytes = real_elf();
        let mut arm = bytes.clone();
        let other = if std::env::consts::ARCH == "aarch64" {
            62
        } else {
            183
        };
        put_u16(&mut arm, 0x12, other);
        let err = check(&arm).unwrap_err();
        assert!(matches!(err, NotForThisHost(_)), "{err}");
        assert!(
            err.to_string()
                .ends_with(&format!("this host is {}", std::env::consts::ARCH)),
            "{err}"
        );
        let mut exec = bytes.clone();
        put_u16(&mut exec, 0x10, 2);
        assert_eq!(
            check(&exec).unwrap_err().to_string(),
            "the ELF type is ET_EXEC (an executable), not a shared object (ET_DYN)"
        );
        let mut narrow = bytes.clone();
        narrow[4] = 1;
        assert_eq!(
            check(&narrow).unwrap_err().to_string(),
            "a 32-bit ELF file, this host is 64-bit"
        );
        let mut big = bytes;
        big[5] = 2;
        assert_eq!(
            check(&big).unwrap_err().to_string(),
            "a big-endian ELF file, this host is little-endian"
        );
    }

    #[test]
    fn garbage_after_the_magic_is_malformed() {
        let mut bytes = b"\x7fELF".to_vec();
        bytes.extend_from_slice(&[0u8; 60]);
        let err = check(&bytes).unwrap_err();
        assert!(matches!(err, Malformed(_)), "{err}");
        assert!(err.to_string().contains("ELF class byte is 0"), "{err}");
    }
}
