//! The decoder: exact lengths and operands for the accepted subset of x86-64.
//!
//! Invariant owned here: [`decode`] returns an [`Insn`] only for an instruction of the
//! subset, with the length the processor would use and every register it reads or
//! writes and every memory operand it touches; anything else is an error, never a
//! guess. The tables below follow the Intel SDM opcode maps (Volume 2, Appendix A):
//! the one-byte map first, then the two-byte `0F` map, each row commented with its
//! mnemonic. Rows that are not written are not in the subset.

use super::Rule;

/// Register numbers: the sixteen GPRs are 0..=15 in encoding order (`rax`, `rcx`, `rdx`,
/// `rbx`, `rsp`, `rbp`, `rsi`, `rdi`, `r8`..`r15`); XMM registers are bits 16..=31 of a
/// register mask.
pub(crate) const RAX: u8 = 0;
pub(crate) const RCX: u8 = 1;
pub(crate) const RDX: u8 = 2;
pub(crate) const RSP: u8 = 4;
pub(crate) const RBP: u8 = 5;
/// No register (a memory operand without base or index).
pub(crate) const NONE: u8 = 0xff;
/// The base of a RIP-relative operand.
pub(crate) const RIP: u8 = 0xfe;

/// The mask bit of GPR `r`.
pub(crate) const fn gpr(r: u8) -> u32 {
    1 << r
}

/// The mask bit of XMM register `x`.
pub(crate) const fn xmm(x: u8) -> u32 {
    1 << (16 + x)
}

/// How control leaves an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Falls through to the next instruction.
    Next,
    /// `jmp rel`: only to the target (an offset from the start of the code; may be
    /// outside it).
    Jump(i64),
    /// `jcc rel`: to the target or the next instruction.
    Branch(i64),
    /// `call rel32`: to the target, then back to the next instruction.
    Call(i64),
    /// `ret`.
    Ret,
    /// `int3`: a trap, accepted only where nothing reaches it.
    Trap,
}

/// What an instruction does to the stack and to the values the ABI rules follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Nothing the rules follow beyond its register masks and memory operand.
    Other,
    /// `push r64` (`NONE` for `push imm`).
    Push(u8),
    /// `pop r64`.
    Pop(u8),
    /// `mov r64, r64`: `dst` gets `src`'s value.
    Mov(u8, u8),
    /// `mov r64, [mem]` (8 bytes).
    Load(u8),
    /// `mov [mem], r64` (8 bytes).
    Store(u8),
    /// `lea r64, [mem]`.
    Lea(u8),
    /// `add`/`sub r64, imm`: the register moves by the signed amount.
    AddImm(u8, i32),
    /// `leave`: `mov rsp, rbp; pop rbp`.
    Leave,
}

/// A memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// Base register, [`RIP`], or [`NONE`].
    pub base: u8,
    /// Index register or [`NONE`].
    pub index: u8,
    /// 1, 2, 4 or 8.
    pub scale: u8,
    /// Displacement (for RIP-relative: from the end of the instruction).
    pub disp: i32,
    /// Bytes accessed.
    pub size: u8,
    /// Whether the instruction reads it.
    pub read: bool,
    /// Whether the instruction writes it.
    pub write: bool,
    /// Alignment the processor requires (1, or 16 for the aligned SSE forms).
    pub align: u8,
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Length in bytes (1..=15).
    pub len: u8,
    /// How control leaves it.
    pub flow: Flow,
    /// What the stack and ABI rules follow.
    pub op: Op,
    /// Registers whose value it uses (GPR bits 0..=15, XMM bits 16..=31). Zeroing idioms
    /// and the merged destination of scalar SSE writes are not reads (see the docs).
    pub reads: u32,
    /// Registers it writes, wholly or partly.
    pub writes: u32,
    /// Its memory operand, if any (`lea` and the `nop r/m` forms have one that is
    /// neither read nor written).
    pub mem: Option<Mem>,
}

/// Register or memory operand of a ModRM byte.
#[derive(Clone, Copy)]
enum Rm {
    Reg(u8),
    Mem(Mem),
}

/// The decoding cursor over one instruction.
struct D<'a> {
    /// The code up to 15 bytes from the instruction's start (the architectural limit):
    /// the only bytes it may have.
    code: &'a [u8],
    pos: usize,
    /// What running out of `code` means: [`Rule::Truncated`] where the code itself ends
    /// there, [`Rule::Unknown`] where the instruction would be longer than 15 bytes (the
    /// processor raises #UD).
    end: Rule,
    /// Operand-size prefix `66`.
    p66: bool,
    /// `F2` / `F3` (only as mandatory SSE prefixes or in endbr64).
    f2: bool,
    f3: bool,
    /// `2E`: accepted on the nop forms only.
    cs: bool,
    /// REX byte present, and its bits.
    rex: bool,
    w: bool,
    r: u8,
    x: u8,
    b: u8,
}

impl D<'_> {
    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Rule> {
        let v = *self.code.get(self.pos).ok_or(self.end)?;
        self.pos += 1;
        Ok(v)
    }

    /// The next `N` bytes (one bounds check).
    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Rule> {
        let b = self.code.get(self.pos..self.pos + N).and_then(|b| <[u8; N]>::try_from(b).ok()).ok_or(self.end)?;
        self.pos += N;
        Ok(b)
    }

    #[inline(always)]
    fn imm(&mut self, size: u8) -> Result<i64, Rule> {
        Ok(match size {
            1 => self.byte()? as i8 as i64,
            2 => i16::from_le_bytes(self.take()?) as i64,
            4 => i32::from_le_bytes(self.take()?) as i64,
            _ => i64::from_le_bytes(self.take()?),
        })
    }

    /// Skips an immediate of `size` bytes whose value nothing uses.
    #[inline(always)]
    fn skip(&mut self, size: u8) -> Result<(), Rule> {
        let end = self.pos + size as usize;
        if end > self.code.len() {
            return Err(self.end);
        }
        self.pos = end;
        Ok(())
    }

    /// A relative transfer's displacement of `size` bytes (its last field), as a target
    /// offset from the start of the code.
    #[inline(always)]
    fn target(&mut self, size: u8) -> Result<i64, Rule> {
        let rel = self.imm(size)?;
        Ok(self.pos as i64 + rel)
    }

    /// Operand size of a `v`-sized operand: 8 with REX.W, 2 with `66`, else 4.
    #[inline(always)]
    fn osize(&self) -> u8 {
        if self.w {
            8
        } else if self.p66 {
            2
        } else {
            4
        }
    }

    /// The register (mask bit) of byte register `n`: without REX, 4..=7 are
    /// `ah`/`ch`/`dh`/`bh`, parts of registers 0..=3.
    #[inline(always)]
    fn reg8(&self, n: u8) -> u8 {
        if !self.rex && (4..8).contains(&n) { n - 4 } else { n }
    }

    /// Decodes ModRM (+ SIB + displacement). Returns (reg field with REX.R, r/m).
    /// `size` is the memory operand's size; `rm8` says a register r/m is a byte register.
    #[inline(always)]
    fn modrm(&mut self, size: u8, rm8: bool) -> Result<(u8, Rm), Rule> {
        let m = self.byte()?;
        let md = m >> 6;
        let reg = ((m >> 3) & 7) | self.r;
        let rm = m & 7;
        if md == 3 {
            let n = rm | self.b;
            return Ok((reg, Rm::Reg(if rm8 { self.reg8(n) } else { n })));
        }
        let mut mem = Mem { base: NONE, index: NONE, scale: 1, disp: 0, size, read: false, write: false, align: 1 };
        if rm == 4 {
            let sib = self.byte()?;
            let idx = ((sib >> 3) & 7) | self.x;
            mem.scale = 1 << (sib >> 6);
            if idx != 4 {
                mem.index = idx;
            }
            let base = sib & 7;
            if base == 5 && md == 0 {
                mem.disp = self.imm(4)? as i32;
            } else {
                mem.base = base | self.b;
            }
        } else if rm == 5 && md == 0 {
            mem.base = RIP;
            mem.disp = self.imm(4)? as i32;
        } else {
            mem.base = rm | self.b;
        }
        match md {
            1 => mem.disp = self.imm(1)? as i32,
            2 => mem.disp = self.imm(4)? as i32,
            _ => {}
        }
        Ok((reg, Rm::Mem(mem)))
    }
}

/// The mask of registers a memory operand's address uses.
#[inline(always)]
fn addr_regs(mem: &Mem) -> u32 {
    let mut m = 0;
    if mem.base < 16 {
        m |= gpr(mem.base);
    }
    if mem.index < 16 {
        m |= gpr(mem.index);
    }
    m
}

impl Insn {
    /// Nothing yet: what decoding starts from.
    pub(crate) const EMPTY: Insn = Insn { len: 0, flow: Flow::Next, op: Op::Other, reads: 0, writes: 0, mem: None };

    /// The r/m operand is read (`r`) and/or written (`w`); `bit` maps a register number
    /// to its mask bit.
    #[inline(always)]
    fn rm(&mut self, rm: Rm, r: bool, w: bool, bit: fn(u8) -> u32) {
        match rm {
            Rm::Reg(n) => {
                if r {
                    self.reads |= bit(n);
                }
                if w {
                    self.writes |= bit(n);
                }
            }
            Rm::Mem(mut mem) => {
                mem.read = r;
                mem.write = w;
                self.reads |= addr_regs(&mem);
                self.mem = Some(mem);
            }
        }
    }
}

#[inline(always)]
fn gbit(n: u8) -> u32 {
    gpr(n)
}

#[inline(always)]
fn xbit(n: u8) -> u32 {
    xmm(n)
}

/// The legacy prefix bytes: `66 67 F0 F2 F3` and the segment overrides.
const LEGACY_PREFIX: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i]] = true;
        i += 1;
    }
    t
};

/// Decodes the instruction at `code[at..]`.
///
/// # Errors
/// As [`decode_into`].
pub(crate) fn decode(code: &[u8], at: usize) -> Result<Insn, Rule> {
    let mut o = Insn::EMPTY;
    decode_into(code, at, &mut o)?;
    Ok(o)
}

/// Decodes the instruction at `code[at..]` into `o`, which must be [`Insn::EMPTY`]
/// (the scratch of the rules holds it: the result is written once, where it is kept);
/// returns its length.
///
/// The precondition matters for soundness: the read and written registers are OR-ed
/// into `o` and some operands are only written when present, so a record left over
/// from another instruction would leak its registers into this one (an argument
/// register could look defined). So it is visible to the validator's own modules only,
/// every caller hands over a record it has just made `Insn::EMPTY`, and debug builds
/// (the whole test suite, fuzzing included) assert it.
///
/// # Errors
/// [`Rule::Truncated`] if the bytes end inside it, [`Rule::Unknown`] if it is outside
/// the subset, [`Rule::Forbidden`] for a system or trapping instruction,
/// [`Rule::Prefix`] for a segment override, `lock` or `rep`, [`Rule::Indirect`] for an
/// indirect or far transfer. `o` then holds part of a decoding.
#[inline(always)]
pub(super) fn decode_into(code: &[u8], at: usize, o: &mut Insn) -> Result<u8, Rule> {
    fast_then::<false>(code, at, o)
}

/// [`decode_into`] with the general path out of line, for the sweep that keeps every
/// instruction: the fast path takes most instructions of compiler output, and the loop
/// around it keeps its values in registers when the large general decoder is not
/// inlined into it (the same functions decide, so the result is `decode_into`'s).
/// The sweep that keeps nothing uses [`decode_into`], where inlining lets the compiler
/// drop the parts of the record it never reads.
///
/// # Errors
/// As [`decode_into`].
#[inline(always)]
pub(super) fn decode_into_outlined(code: &[u8], at: usize, o: &mut Insn) -> Result<u8, Rule> {
    fast_then::<true>(code, at, o)
}

/// [`decode_into_outlined`] with the fast path reading a whole 16-byte window of
/// `padded`: `code` followed by 16 or more bytes (see `scratch::padded`), so that it
/// checks no length before the bytes it reads.
///
/// Where the fast path returns a length, every byte it read lies inside that length, so
/// where the result ends inside `code` it is [`decode_into`]'s (a unit test checks this
/// with random bytes as the padding). It may instead end past `code`, having
/// read the padding: that instruction is not in the code (which ends inside it), and
/// the caller must not use it as decoded. Checking the end once, after the last
/// instruction, is cheaper than checking each one.
///
/// # Errors
/// As [`decode_into`].
#[inline(always)]
pub(super) fn decode_padded(code: &[u8], padded: &[u8], at: usize, o: &mut Insn) -> Result<u8, Rule> {
    debug_assert!(*o == Insn::EMPTY);
    debug_assert!(padded.len() >= code.len() + 16 && padded.starts_with(code));
    if let Some(len) = padded.get(at..at + 16).and_then(|w| fast(w, at, o)) {
        return Ok(len);
    }
    general_outlined(code, at, o)
}

/// The fast path, then for what it declines the general decoder: out of line if
/// `OUTLINED`, else inlined.
#[inline(always)]
fn fast_then<const OUTLINED: bool>(code: &[u8], at: usize, o: &mut Insn) -> Result<u8, Rule> {
    debug_assert!(*o == Insn::EMPTY);
    if let Some(len) = code.get(at..).and_then(|w| fast(w, at, o)) {
        return Ok(len);
    }
    if OUTLINED { general_outlined(code, at, o) } else { general(code, at, o) }
}

/// [`general`], not inlined (see [`decode_into_outlined`]).
#[inline(never)]
fn general_outlined(code: &[u8], at: usize, o: &mut Insn) -> Result<u8, Rule> {
    general(code, at, o)
}

/// The commonest instructions of compiler output, taken before [`general`]: `ret`,
/// `jmp`/`jcc rel8`, `nop`, `push`/`pop r64`, `lea`, and the register forms (ModRM mod
/// 3) of the ALU ops, `test`, `mov`, shifts, group 3 and `inc`/`dec`, `mov r, imm`,
/// `cqo`/`cdqe`; in the `0F` map `cmovcc`, `imul`, the multi-byte `nop`s and the
/// register forms of the scalar SSE rows; each with the optional REX (and for the `0F`
/// map the one `66`, `F2` or `F3`) that the general path accepts there. Writes into
/// `o` (which is [`Insn::EMPTY`]) exactly what [`general`] would and returns the
/// length, or returns `None`, with `o` untouched, for anything else, bytes that end
/// too early included ([`general`] then decides). A unit test compares the two over
/// random and steered byte strings.
///
/// `win` holds the bytes from the instruction's start, which is at offset `at` in the
/// code (for jump targets); positions below are relative to it. When it returns a
/// length, it has read no byte past it (see [`decode_padded`]).
#[inline(always)]
fn fast(win: &[u8], at: usize, o: &mut Insn) -> Option<u8> {
    let b0 = *win.first()?;
    // One table lookup gives the form; a REX moves on to the opcode after it, whose
    // form must then be one that takes a REX.
    let mut class = FAST[b0 as usize];
    let (rex, p, op) = if class == F_REX {
        let op = *win.get(1)?;
        class = FAST[op as usize];
        if class >= F_NO_REX {
            return None;
        }
        (b0, 1, op)
    } else {
        (0, 0, b0)
    };
    let w = rex & 8 != 0;
    let b = (rex & 1) << 3;
    match class {
        F_NONE | F_REX => return None,
        // C3: ret
        F_RET => {
            o.flow = Flow::Ret;
            o.reads = gpr(RSP);
            o.writes = gpr(RSP);
            o.mem = Some(stack_slot(false));
            return done(o, 1);
        }
        // 70-7F: jcc rel8, EB: jmp rel8
        F_JCC8 | F_JMP8 => {
            let target = at as i64 + 2 + *win.get(1)? as i8 as i64;
            o.flow = if class == F_JMP8 { Flow::Jump(target) } else { Flow::Branch(target) };
            return done(o, 2);
        }
        // 90: nop
        F_NOP => return done(o, 1),
        // One mandatory prefix before the 0F map (or the operand-size prefix of a nop).
        F_PREFIX => {
            let b1 = *win.get(1)?;
            let rex = if b1 & 0xf0 == 0x40 { b1 } else { 0 };
            let p = 1 + (rex != 0) as usize;
            if *win.get(p)? != 0x0f {
                return None;
            }
            return fast_0f(win, p + 1, b0, rex, o);
        }
        // 50-57: push r64 / 58-5F: pop r64
        F_PUSH => {
            let r = (op & 7) | b;
            o.reads = gpr(r) | gpr(RSP);
            o.writes = gpr(RSP);
            o.op = Op::Push(r);
            o.mem = Some(stack_slot(true));
            return done(o, p + 1);
        }
        F_POP => {
            let r = (op & 7) | b;
            o.reads = gpr(RSP);
            o.writes = gpr(r) | gpr(RSP);
            o.op = Op::Pop(r);
            o.mem = Some(stack_slot(false));
            return done(o, p + 1);
        }
        F_0F => return fast_0f(win, p + 1, 0, rex, o),
        // 98: cdqe (cwde), 99: cqo (cdq)
        F_CONVERT => {
            o.reads = gpr(RAX);
            o.writes = gpr(if op == 0x98 { RAX } else { RDX });
            return done(o, p + 1);
        }
        // B8-BF: mov r, Iv
        F_MOV_IMM => {
            let end = p + 1 + if w { 8 } else { 4 };
            if end > win.len() {
                return None;
            }
            o.writes = gpr((op & 7) | b);
            return done(o, end);
        }
        // 8D: lea Gv, M
        F_LEA => {
            let m = *win.get(p + 1)?;
            let (mem, end) = fast_mem(win, p + 1, m, rex, 0)?;
            let reg = ((m >> 3) & 7) | ((rex & 4) << 1);
            o.reads = addr_regs(&mem);
            o.writes = gpr(reg);
            o.mem = Some(mem);
            if w {
                o.op = Op::Lea(reg);
            }
            return done(o, end);
        }
        _ => {}
    }
    // The register forms (ModRM mod 3) of v-sized operands.
    let m = *win.get(p + 1)?;
    if m >> 6 != 3 {
        return None;
    }
    let reg = ((m >> 3) & 7) | ((rex & 4) << 1);
    let n = (m & 7) | b;
    let mut end = p + 2;
    match class {
        // 83: grp1 Ev, Ib (add, or, adc, sbb, and, sub, xor, cmp)
        F_GRP1_IB => {
            let imm = *win.get(p + 2)? as i8 as i32;
            end += 1;
            let alu = reg & 7;
            o.reads = gpr(n);
            if alu != 7 {
                o.writes = gpr(n);
            }
            if w && (alu == 0 || alu == 5) {
                o.op = Op::AddImm(n, if alu == 0 { imm } else { -imm });
            }
        }
        // 85: test Ev, Gv
        F_TEST => o.reads = gpr(n) | gpr(reg),
        // 89: mov Ev, Gv
        F_MOV_STORE => {
            o.writes = gpr(n);
            o.reads = gpr(reg);
            if w {
                o.op = Op::Mov(n, reg);
            }
        }
        // 8B: mov Gv, Ev
        F_MOV_LOAD => {
            o.reads = gpr(n);
            o.writes = gpr(reg);
            if w {
                o.op = Op::Mov(reg, n);
            }
        }
        // C1: grp2 Ev, Ib / D1: by 1 / D3: by CL
        F_SHIFT => {
            if op == 0xc1 {
                if p + 2 >= win.len() {
                    return None;
                }
                end += 1;
            }
            o.reads = gpr(n) | if op == 0xd3 { gpr(RCX) } else { 0 };
            o.writes = gpr(n);
        }
        // F7 /2, /3: not, neg; /4-/7: mul, imul, div, idiv (/0 test and /1 go the
        // general way)
        F_GRP3 => match reg & 7 {
            2 | 3 => {
                o.reads = gpr(n);
                o.writes = gpr(n);
            }
            4..=7 => {
                o.reads = gpr(n) | gpr(RAX) | if reg & 7 >= 6 { gpr(RDX) } else { 0 };
                o.writes = gpr(RAX) | gpr(RDX);
            }
            _ => return None,
        },
        // FF /0, /1: inc, dec Ev
        F_GRP5 => {
            if reg & 7 > 1 {
                return None;
            }
            o.reads = gpr(n);
            o.writes = gpr(n);
        }
        // 00-3B: the ALU ops, Ev,Gv (low bits 1) and Gv,Ev (low bits 3)
        _ => {
            let alu = op >> 3;
            if n == reg && (alu == 6 || alu == 5) {
                // xor r, r and sub r, r: zeroing idioms, they read nothing.
                o.writes = gpr(n);
            } else {
                o.reads = gpr(n) | gpr(reg);
                if alu != 7 {
                    o.writes = gpr(if op & 2 != 0 { reg } else { n });
                }
            }
        }
    }
    done(o, end)
}

// The forms of the fast path's table. Those from `F_NO_REX` on are taken only without
// a REX (the general path decides the rest).
const F_NONE: u8 = 0;
const F_ALU: u8 = 1;
const F_GRP1_IB: u8 = 2;
const F_TEST: u8 = 3;
const F_MOV_STORE: u8 = 4;
const F_MOV_LOAD: u8 = 5;
const F_SHIFT: u8 = 6;
const F_GRP3: u8 = 7;
const F_GRP5: u8 = 8;
const F_PUSH: u8 = 9;
const F_POP: u8 = 10;
const F_0F: u8 = 11;
const F_CONVERT: u8 = 12;
const F_MOV_IMM: u8 = 13;
const F_LEA: u8 = 14;
const F_NO_REX: u8 = 15;
const F_RET: u8 = 15;
const F_JCC8: u8 = 16;
const F_JMP8: u8 = 17;
const F_NOP: u8 = 18;
const F_PREFIX: u8 = 19;
const F_REX: u8 = 20;

/// The fast path's form of each first byte.
const FAST: [u8; 256] = {
    let mut t = [F_NONE; 256];
    let mut i = 0;
    while i < 256 {
        let op = i as u8;
        t[i] = match op {
            0x00..=0x3f if op & 7 == 1 || op & 7 == 3 => F_ALU,
            0x40..=0x4f => F_REX,
            0x50..=0x57 => F_PUSH,
            0x58..=0x5f => F_POP,
            0x0f => F_0F,
            0x66 | 0xf2 | 0xf3 => F_PREFIX,
            0x70..=0x7f => F_JCC8,
            0x83 => F_GRP1_IB,
            0x85 => F_TEST,
            0x89 => F_MOV_STORE,
            0x8b => F_MOV_LOAD,
            0x8d => F_LEA,
            0x90 => F_NOP,
            0x98 | 0x99 => F_CONVERT,
            0xb8..=0xbf => F_MOV_IMM,
            0xc1 | 0xd1 | 0xd3 => F_SHIFT,
            0xc3 => F_RET,
            0xeb => F_JMP8,
            0xf7 => F_GRP3,
            0xff => F_GRP5,
            _ => F_NONE,
        };
        i += 1;
    }
    t
};

/// The fast path's instruction, `end` bytes long: its length.
#[inline(always)]
fn done(o: &mut Insn, end: usize) -> Option<u8> {
    let len = end as u8;
    o.len = len;
    Some(len)
}

/// The fast path in the `0F` map: `q` is the position in `win` after `0F`, `pfx` the one
/// prefix before it (`66`, `F2`, `F3`) or 0.
#[inline(always)]
fn fast_0f(win: &[u8], q: usize, pfx: u8, rex: u8, o: &mut Insn) -> Option<u8> {
    let op = *win.get(q)?;
    let m = *win.get(q + 1)?;
    let reg = ((m >> 3) & 7) | ((rex & 4) << 1);
    if op == 0x1f {
        // 0F 1F /0: nop Ev; the operand is not accessed.
        if !(pfx == 0 || pfx == 0x66) || reg & 7 != 0 {
            return None;
        }
        if m >> 6 == 3 {
            return done(o, q + 2);
        }
        let size = if rex & 8 != 0 {
            8
        } else if pfx == 0x66 {
            2
        } else {
            4
        };
        let (mem, end) = fast_mem(win, q + 1, m, rex, size)?;
        o.mem = Some(mem);
        return done(o, end);
    }
    if m >> 6 != 3 {
        return None;
    }
    let n = (m & 7) | ((rex & 1) << 3);
    let packed = pfx == 0 || pfx == 0x66;
    let scalar = pfx == 0xf2 || pfx == 0xf3;
    match op {
        // 0F 40-4F: cmovcc Gv, Ev; 0F AF: imul Gv, Ev
        0x40..=0x4f | 0xaf if pfx == 0 => {
            o.reads = gpr(n) | gpr(reg);
            o.writes = gpr(reg);
        }
        // 0F 10 (movups/movupd/movss/movsd), 0F 28 (movaps/movapd), 0F 51 (sqrt),
        // 0F 5A (cvtss2sd/cvtsd2ss): xmm, xmm; the destination is written, not read.
        0x10 | 0x51 => {
            o.reads = xmm(n);
            o.writes = xmm(reg);
        }
        0x28 | 0x5a if (op == 0x28) == packed => {
            o.reads = xmm(n);
            o.writes = xmm(reg);
        }
        // 0F 11, 0F 29: the store forms, register to register.
        0x11 => {
            o.reads = xmm(reg);
            o.writes = xmm(n);
        }
        0x29 if packed => {
            o.reads = xmm(reg);
            o.writes = xmm(n);
        }
        // F3/F2 0F 2A: cvtsi2ss/cvtsi2sd xmm, r
        0x2a if scalar => {
            o.reads = gpr(n);
            o.writes = xmm(reg);
        }
        // F3/F2 0F 2C, 2D: cvt(t)ss2si/cvt(t)sd2si r, xmm
        0x2c | 0x2d if scalar => {
            o.reads = xmm(n);
            o.writes = gpr(reg);
        }
        // 0F 2E, 2F: (u)comiss/(u)comisd
        0x2e | 0x2f if packed => o.reads = xmm(n) | xmm(reg),
        // 0F 58, 59, 5C-5F: add, mul, sub, min, div, max (all four prefixes);
        // 0F 54, 56: and, or (packed); 0F 55, 57 andn, xor and 66 0F EF pxor (packed,
        // zeroing idioms on one register)
        0x58 | 0x59 | 0x5c..=0x5f => {
            o.reads = xmm(n) | xmm(reg);
            o.writes = xmm(reg);
        }
        0x54..=0x57 | 0xef if (op == 0xef && pfx == 0x66) || (op != 0xef && packed) => {
            if n == reg && (op == 0x55 || op == 0x57 || op == 0xef) {
                o.writes = xmm(reg);
            } else {
                o.reads = xmm(n) | xmm(reg);
                o.writes = xmm(reg);
            }
        }
        _ => return None,
    }
    done(o, q + 2)
}

/// The fast path's memory operand of ModRM byte `m` at `win[p]` (mod 0..=2): the
/// operand (neither read nor written, as `lea` and `nop` have it) and the position
/// after its last displacement byte; `None` where the bytes end first.
#[inline(always)]
fn fast_mem(win: &[u8], p: usize, m: u8, rex: u8, size: u8) -> Option<(Mem, usize)> {
    let md = m >> 6;
    if md == 3 {
        return None;
    }
    let b = (rex & 1) << 3;
    let mut mem = Mem { base: NONE, index: NONE, scale: 1, disp: 0, size, read: false, write: false, align: 1 };
    let mut q = p + 1;
    let rm = m & 7;
    let mut disp32 = md == 2;
    if rm == 4 {
        let sib = *win.get(q)?;
        q += 1;
        let idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
        mem.scale = 1 << (sib >> 6);
        if idx != 4 {
            mem.index = idx;
        }
        let base = sib & 7;
        if base == 5 && md == 0 {
            disp32 = true;
        } else {
            mem.base = base | b;
        }
    } else if rm == 5 && md == 0 {
        mem.base = RIP;
        disp32 = true;
    } else {
        mem.base = rm | b;
    }
    if md == 1 {
        mem.disp = *win.get(q)? as i8 as i32;
        q += 1;
    } else if disp32 {
        let d = win.get(q..q + 4)?;
        mem.disp = i32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        q += 4;
    }
    Some((mem, q))
}

/// Decodes any instruction (see [`decode_into`]).
#[inline(always)]
fn general(code: &[u8], at: usize, o: &mut Insn) -> Result<u8, Rule> {
    let limit = code.len().min(at.saturating_add(15));
    let mut d = D {
        code: &code[..limit],
        pos: at,
        end: if limit < code.len() { Rule::Unknown } else { Rule::Truncated },
        p66: false,
        f2: false,
        f3: false,
        cs: false,
        rex: false,
        w: false,
        r: 0,
        x: 0,
        b: 0,
    };
    // Legacy prefixes, then at most one REX directly before the opcode. Most
    // instructions have no legacy prefix: they skip the prefix loop and the checks on
    // prefixes below.
    let mut op = d.byte()?;
    let prefixed = LEGACY_PREFIX[op as usize];
    while LEGACY_PREFIX[op as usize] {
        match op {
            0x66 => d.p66 = true,
            0xf2 if !d.f3 => d.f2 = true,
            0xf3 if !d.f2 => d.f3 = true,
            0x2e if !d.cs => d.cs = true,
            0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => return Err(Rule::Prefix),
            // Address-size override: not in the subset.
            0x67 => return Err(Rule::Unknown),
            _ => break,
        }
        op = d.byte()?;
    }
    if op & 0xf0 == 0x40 {
        d.rex = true;
        d.w = op & 8 != 0;
        d.r = (op & 4) << 1;
        d.x = (op & 2) << 2;
        d.b = (op & 1) << 3;
        op = d.byte()?;
        if op & 0xf0 == 0x40 || LEGACY_PREFIX[op as usize] {
            // A REX that is not directly before the opcode is ignored by the processor;
            // not in the subset.
            return Err(Rule::Unknown);
        }
    }
    if op == 0x0f {
        two_byte(&mut d, o)?;
    } else {
        if prefixed {
            if d.cs && op != 0x90 {
                return Err(Rule::Prefix);
            }
            if d.f2 || d.f3 {
                // rep / repne (and pause, F3 90) in the one-byte map: rejected.
                return Err(Rule::Prefix);
            }
            if d.p66 && matches!(op, 0x70..=0x7f | 0xc3 | 0xcc | 0xe8 | 0xe9 | 0xeb) {
                // An operand-size prefix on a transfer truncates rip on some processors.
                return Err(Rule::Unknown);
            }
        }
        one_byte(&mut d, o, op)?;
    }
    let len = (d.pos - at) as u8;
    o.len = len;
    Ok(len)
}

/// The one-byte opcode map (SDM Vol. 2, Table A-2).
#[inline(always)]
fn one_byte(d: &mut D, o: &mut Insn, op: u8) -> Result<(), Rule> {
    let v = d.osize();
    match op {
        // 00-3B: add, or, adc, sbb, and, sub, xor, cmp in the forms
        //   Eb,Gb / Ev,Gv / Gb,Eb / Gv,Ev  (low three bits 0..=3)
        //   AL,Ib / rAX,Iz                 (low three bits 4, 5)
        // 06/07/0E/16/17/1E/1F/26/27/2E/2F/36/37/3E/3F are invalid or prefixes in 64-bit mode.
        0x00..=0x3f => {
            if op & 7 > 5 {
                return Err(Rule::Unknown);
            }
            let alu = op >> 3; // 0 add 1 or 2 adc 3 sbb 4 and 5 sub 6 xor 7 cmp
            let writes_dst = alu != 7;
            match op & 7 {
                0..=3 => {
                    let byte = op & 1 == 0;
                    let size = if byte { 1 } else { v };
                    let (reg, rm) = d.modrm(size, byte)?;
                    let reg = if byte { d.reg8(reg) } else { reg };
                    let to_reg = op & 2 != 0;
                    // xor r, r and sub r, r: zeroing idioms, they read nothing.
                    if let (Rm::Reg(n), false) = (rm, byte) {
                        if n == reg && (alu == 6 || alu == 5) {
                            o.writes |= gpr(n);
                            return Ok(());
                        }
                    }
                    if to_reg {
                        o.rm(rm, true, false, gbit);
                        o.reads |= gpr(reg);
                        if writes_dst {
                            o.writes |= gpr(reg);
                        }
                    } else {
                        o.rm(rm, true, writes_dst, gbit);
                        o.reads |= gpr(reg);
                    }
                }
                4 => {
                    d.skip(1)?;
                    o.reads |= gpr(RAX);
                    if writes_dst {
                        o.writes |= gpr(RAX);
                    }
                }
                _ => {
                    d.skip(if v == 2 { 2 } else { 4 })?;
                    o.reads |= gpr(RAX);
                    if writes_dst {
                        o.writes |= gpr(RAX);
                    }
                }
            }
        }
        // 50-57: push r64
        0x50..=0x57 => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            let r = (op & 7) | d.b;
            o.reads |= gpr(r) | gpr(RSP);
            o.writes |= gpr(RSP);
            o.op = Op::Push(r);
            o.mem = Some(stack_slot(true));
        }
        // 58-5F: pop r64
        0x58..=0x5f => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            let r = (op & 7) | d.b;
            o.reads |= gpr(RSP);
            o.writes |= gpr(r) | gpr(RSP);
            o.op = Op::Pop(r);
            o.mem = Some(stack_slot(false));
        }
        // 63: movsxd Gv, Ed (not the 16-bit form)
        0x63 => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(4, false)?;
            o.rm(rm, true, false, gbit);
            o.writes |= gpr(reg);
        }
        // 68: push Iz / 6A: push Ib
        0x68 | 0x6a => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            d.skip(if op == 0x68 { 4 } else { 1 })?;
            o.reads |= gpr(RSP);
            o.writes |= gpr(RSP);
            o.op = Op::Push(NONE);
            o.mem = Some(stack_slot(true));
        }
        // 69: imul Gv, Ev, Iz / 6B: imul Gv, Ev, Ib
        0x69 | 0x6b => {
            let (reg, rm) = d.modrm(v, false)?;
            d.skip(if op == 0x6b {
                1
            } else if v == 2 {
                2
            } else {
                4
            })?;
            o.rm(rm, true, false, gbit);
            o.writes |= gpr(reg);
        }
        // 70-7F: jcc rel8
        0x70..=0x7f => {
            o.flow = Flow::Branch(d.target(1)?);
        }
        // 80: grp1 Eb, Ib / 81: grp1 Ev, Iz / 83: grp1 Ev, Ib  (82 is invalid in 64-bit mode)
        0x80 | 0x81 | 0x83 => {
            let byte = op == 0x80;
            let size = if byte { 1 } else { v };
            let (reg, rm) = d.modrm(size, byte)?;
            let alu = reg & 7;
            let imm = d.imm(if op == 0x81 { if v == 2 { 2 } else { 4 } } else { 1 })?;
            o.rm(rm, true, alu != 7, gbit);
            if let (Rm::Reg(n), 8, 0 | 5) = (rm, size, alu) {
                // add/sub r64, imm: followed by the stack rules.
                let imm = imm as i32;
                o.op = Op::AddImm(n, if alu == 0 { imm } else { imm.wrapping_neg() });
                if imm == i32::MIN {
                    o.op = Op::Other;
                }
            }
        }
        // 84: test Eb, Gb / 85: test Ev, Gv
        0x84 | 0x85 => {
            let byte = op == 0x84;
            let (reg, rm) = d.modrm(if byte { 1 } else { v }, byte)?;
            let reg = if byte { d.reg8(reg) } else { reg };
            o.rm(rm, true, false, gbit);
            o.reads |= gpr(reg);
        }
        // 86: xchg Eb, Gb / 87: xchg Ev, Gv
        0x86 | 0x87 => {
            let byte = op == 0x86;
            let (reg, rm) = d.modrm(if byte { 1 } else { v }, byte)?;
            let reg = if byte { d.reg8(reg) } else { reg };
            o.rm(rm, true, true, gbit);
            o.reads |= gpr(reg);
            o.writes |= gpr(reg);
        }
        // 88: mov Eb, Gb / 89: mov Ev, Gv
        0x88 | 0x89 => {
            let byte = op == 0x88;
            let size = if byte { 1 } else { v };
            let (reg, rm) = d.modrm(size, byte)?;
            let reg = if byte { d.reg8(reg) } else { reg };
            o.rm(rm, false, true, gbit);
            o.reads |= gpr(reg);
            if size == 8 {
                o.op = match rm {
                    Rm::Reg(n) => Op::Mov(n, reg),
                    Rm::Mem(_) => Op::Store(reg),
                };
            }
        }
        // 8A: mov Gb, Eb / 8B: mov Gv, Ev
        0x8a | 0x8b => {
            let byte = op == 0x8a;
            let size = if byte { 1 } else { v };
            let (reg, rm) = d.modrm(size, byte)?;
            let reg = if byte { d.reg8(reg) } else { reg };
            o.rm(rm, true, false, gbit);
            o.writes |= gpr(reg);
            if size == 8 {
                o.op = match rm {
                    Rm::Reg(n) => Op::Mov(reg, n),
                    Rm::Mem(_) => Op::Load(reg),
                };
            }
        }
        // 8D: lea Gv, M (computes an address, touches no memory)
        0x8d => {
            let (reg, rm) = d.modrm(0, false)?;
            let Rm::Mem(mem) = rm else { return Err(Rule::Unknown) };
            o.reads |= addr_regs(&mem);
            o.writes |= gpr(reg);
            o.mem = Some(mem);
            if v == 8 {
                o.op = Op::Lea(reg);
            }
        }
        // 90: nop (xchg eAX, eAX); with REX.B it is xchg r8, rax.
        // 91-97 (and 90 with REX.B): xchg r, rAX
        0x90..=0x97 => {
            if op == 0x90 && d.b == 0 {
                return Ok(());
            }
            if d.cs {
                return Err(Rule::Prefix);
            }
            let r = (op & 7) | d.b;
            o.reads |= gpr(r) | gpr(RAX);
            o.writes |= gpr(r) | gpr(RAX);
        }
        // 98: cbw / cwde / cdqe
        0x98 => {
            o.reads |= gpr(RAX);
            o.writes |= gpr(RAX);
        }
        // 99: cwd / cdq / cqo
        0x99 => {
            o.reads |= gpr(RAX);
            o.writes |= gpr(RDX);
        }
        // A8: test AL, Ib / A9: test rAX, Iz
        0xa8 | 0xa9 => {
            d.skip(if op == 0xa8 {
                1
            } else if v == 2 {
                2
            } else {
                4
            })?;
            o.reads |= gpr(RAX);
        }
        // B0-B7: mov r8, Ib
        0xb0..=0xb7 => {
            d.skip(1)?;
            o.writes |= gpr(d.reg8((op & 7) | d.b));
        }
        // B8-BF: mov r, Iv (movabs with REX.W)
        0xb8..=0xbf => {
            d.skip(v)?;
            o.writes |= gpr((op & 7) | d.b);
        }
        // C0: grp2 Eb, Ib / C1: grp2 Ev, Ib / D0, D1: by 1 / D2, D3: by CL
        //   (rol, ror, rcl, rcr, shl, shr, sal, sar)
        0xc0 | 0xc1 | 0xd0..=0xd3 => {
            let byte = op & 1 == 0;
            let (_, rm) = d.modrm(if byte { 1 } else { v }, byte)?;
            if op <= 0xc1 {
                d.skip(1)?;
            }
            if op >= 0xd2 {
                o.reads |= gpr(RCX);
            }
            o.rm(rm, true, true, gbit);
        }
        // C3: ret (near)
        0xc3 => {
            o.flow = Flow::Ret;
            o.reads |= gpr(RSP);
            o.writes |= gpr(RSP);
            o.mem = Some(stack_slot(false));
        }
        // C6 /0: mov Eb, Ib / C7 /0: mov Ev, Iz
        0xc6 | 0xc7 => {
            let byte = op == 0xc6;
            let (reg, rm) = d.modrm(if byte { 1 } else { v }, byte)?;
            if reg & 7 != 0 {
                return Err(Rule::Unknown);
            }
            d.skip(if byte {
                1
            } else if v == 2 {
                2
            } else {
                4
            })?;
            o.rm(rm, false, true, gbit);
        }
        // C9: leave
        0xc9 => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            o.op = Op::Leave;
            o.reads |= gpr(RBP);
            o.writes |= gpr(RSP) | gpr(RBP);
            let mut m = stack_slot(false);
            m.base = RBP;
            o.mem = Some(m);
        }
        // CC: int3
        0xcc => o.flow = Flow::Trap,
        // E8: call rel32
        0xe8 => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            o.flow = Flow::Call(d.target(4)?);
            o.reads |= gpr(RSP);
            o.writes |= gpr(RSP);
            o.mem = Some(stack_slot(true));
        }
        // E9: jmp rel32 / EB: jmp rel8
        0xe9 => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            o.flow = Flow::Jump(d.target(4)?)
        }
        0xeb => o.flow = Flow::Jump(d.target(1)?),
        // F6: grp3 Eb / F7: grp3 Ev (test, -, not, neg, mul, imul, div, idiv)
        0xf6 | 0xf7 => {
            let byte = op == 0xf6;
            let (reg, rm) = d.modrm(if byte { 1 } else { v }, byte)?;
            match reg & 7 {
                0 => {
                    d.skip(if byte {
                        1
                    } else if v == 2 {
                        2
                    } else {
                        4
                    })?;
                    o.rm(rm, true, false, gbit);
                }
                2 | 3 => o.rm(rm, true, true, gbit),
                4..=7 => {
                    o.rm(rm, true, false, gbit);
                    let divide = reg & 7 >= 6;
                    o.reads |= gpr(RAX);
                    o.writes |= gpr(RAX);
                    if !byte {
                        o.writes |= gpr(RDX);
                        if divide {
                            o.reads |= gpr(RDX);
                        }
                    }
                }
                _ => return Err(Rule::Unknown),
            }
        }
        // FE /0,/1: inc, dec Eb / FF /0,/1: inc, dec Ev; FF /2 call, /3 call far,
        // /4 jmp, /5 jmp far (indirect transfers)
        0xfe | 0xff => {
            let byte = op == 0xfe;
            let (reg, rm) = d.modrm(if byte { 1 } else { v }, byte)?;
            match reg & 7 {
                0 | 1 => o.rm(rm, true, true, gbit),
                2..=5 if !byte => return Err(Rule::Indirect),
                _ => return Err(Rule::Unknown),
            }
        }
        // System, trapping and I/O instructions of the one-byte map:
        // 6C-6F ins/outs, 9A call far, 9B-9F (wait, pushf, popf, sahf, lahf are not in
        // the subset: Unknown below), C2 ret imm16 and CA, CB far returns, CD int n,
        // CE into, CF iret, E4-E7 and EC-EF in/out, EA jmp far, F1 int1, F4 hlt,
        // FA cli, FB sti.
        0x6c..=0x6f
        | 0x9a
        | 0xca
        | 0xcb
        | 0xcd
        | 0xce
        | 0xcf
        | 0xe4..=0xe7
        | 0xea
        | 0xec..=0xef
        | 0xf1
        | 0xf4
        | 0xfa
        | 0xfb => return Err(Rule::Forbidden),
        _ => return Err(Rule::Unknown),
    }
    Ok(())
}

/// The 8-byte slot at `[rsp]` (or, for a push, the one below it): read or written.
#[inline(always)]
fn stack_slot(push: bool) -> Mem {
    Mem {
        base: RSP,
        index: NONE,
        scale: 1,
        disp: if push { -8 } else { 0 },
        size: 8,
        read: !push,
        write: push,
        align: 1,
    }
}

/// Which mandatory prefix an SSE row was written with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pfx {
    None,
    P66,
    F3,
    F2,
}

/// The two-byte opcode map (SDM Vol. 2, Table A-3).
#[inline(always)]
fn two_byte(d: &mut D, o: &mut Insn) -> Result<(), Rule> {
    let op = d.byte()?;
    let v = d.osize();
    // Mandatory prefixes of the SSE rows: F2/F3 win over 66 (66 then sizes nothing).
    let pfx = if d.f3 {
        Pfx::F3
    } else if d.f2 {
        Pfx::F2
    } else if d.p66 {
        Pfx::P66
    } else {
        Pfx::None
    };
    let sse = (0x10..=0x17).contains(&op) || (0x28..=0x2f).contains(&op) || (0x50..=0x7f).contains(&op) || op >= 0xc2;
    if d.cs && op != 0x1f {
        return Err(Rule::Prefix);
    }
    if (d.f2 || d.f3) && !sse && !matches!(op, 0x1e | 0xb8 | 0xbc | 0xbd) {
        return Err(Rule::Prefix);
    }
    match op {
        // 0F 05 syscall, 0F 07 sysret, 0F 34 sysenter, 0F 35 sysexit; 0F 00, 0F 01 system
        // groups, 0F 06 clts, 0F 08 invd, 0F 09 wbinvd, 0F 0B ud2, 0F 30 wrmsr, 0F 31
        // rdtsc, 0F 32 rdmsr, 0F 33 rdpmc, 0F A2 cpuid, 0F AA rsm: forbidden.
        0x00 | 0x01 | 0x05..=0x09 | 0x0b | 0x30..=0x35 | 0x37 | 0xa2 | 0xaa => Err(Rule::Forbidden),
        // F3 0F 1E FA: endbr64
        0x1e => {
            if !(pfx == Pfx::F3 && !d.p66 && !d.rex) {
                return Err(Rule::Unknown);
            }
            if d.byte()? != 0xfa {
                return Err(Rule::Unknown);
            }
            Ok(())
        }
        // 0F 1F /0: nop Ev (the multi-byte nops; the operand is not accessed)
        0x1f => {
            if !matches!(pfx, Pfx::None | Pfx::P66) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(v, false)?;
            if reg & 7 != 0 {
                return Err(Rule::Unknown);
            }
            if let Rm::Mem(mem) = rm {
                o.mem = Some(mem);
            }
            Ok(())
        }
        // 0F 10: movups / movupd / movss / movsd  xmm, xmm/m
        // 0F 11: the same, store form
        0x10 | 0x11 => {
            let size = match pfx {
                Pfx::F3 => 4,
                Pfx::F2 => 8,
                _ => 16,
            };
            let (reg, rm) = d.modrm(size, false)?;
            if op == 0x10 {
                o.rm(rm, true, false, xbit);
                // movss/movsd xmm, xmm merge into the destination: a write (see docs).
                o.writes |= xmm(reg);
            } else {
                o.rm(rm, false, true, xbit);
                o.reads |= xmm(reg);
            }
            Ok(())
        }
        // 0F 28: movaps / movapd xmm, xmm/m128 (aligned) / 0F 29: the store form
        0x28 | 0x29 => {
            if !matches!(pfx, Pfx::None | Pfx::P66) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(16, false)?;
            let rm = align16(rm);
            if op == 0x28 {
                o.rm(rm, true, false, xbit);
                o.writes |= xmm(reg);
            } else {
                o.rm(rm, false, true, xbit);
                o.reads |= xmm(reg);
            }
            Ok(())
        }
        // 0F 2A: cvtsi2ss (F3) / cvtsi2sd (F2)  xmm, r/m32/64 (merges: a write)
        0x2a => {
            if !matches!(pfx, Pfx::F3 | Pfx::F2) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(if d.w { 8 } else { 4 }, false)?;
            o.rm(rm, true, false, gbit);
            o.writes |= xmm(reg);
            Ok(())
        }
        // 0F 2C: cvttss2si (F3) / cvttsd2si (F2); 0F 2D: cvtss2si / cvtsd2si  r, xmm/m
        0x2c | 0x2d => {
            if !matches!(pfx, Pfx::F3 | Pfx::F2) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(if pfx == Pfx::F3 { 4 } else { 8 }, false)?;
            o.rm(rm, true, false, xbit);
            o.writes |= gpr(reg);
            Ok(())
        }
        // 0F 2E: ucomiss / ucomisd (66); 0F 2F: comiss / comisd (66)
        0x2e | 0x2f => {
            if !matches!(pfx, Pfx::None | Pfx::P66) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(if pfx == Pfx::None { 4 } else { 8 }, false)?;
            o.rm(rm, true, false, xbit);
            o.reads |= xmm(reg);
            Ok(())
        }
        // 0F 40-4F: cmovcc Gv, Ev
        0x40..=0x4f => {
            let (reg, rm) = d.modrm(v, false)?;
            o.rm(rm, true, false, gbit);
            o.reads |= gpr(reg);
            o.writes |= gpr(reg);
            Ok(())
        }
        // 0F 51: sqrtps / sqrtpd / sqrtss / sqrtsd (the scalar forms merge: a write)
        0x51 => {
            let (reg, rm) = d.modrm(sse_size(pfx), false)?;
            let rm = if matches!(pfx, Pfx::None | Pfx::P66) { align16(rm) } else { rm };
            o.rm(rm, true, false, xbit);
            o.writes |= xmm(reg);
            Ok(())
        }
        // 0F 54: andps / andpd, 0F 55: andnps / andnpd, 0F 56: orps / orpd,
        // 0F 57: xorps / xorpd
        0x54..=0x57 => {
            if !matches!(pfx, Pfx::None | Pfx::P66) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(16, false)?;
            sse_alu(o, reg, align16(rm), op == 0x57 || op == 0x55);
            Ok(())
        }
        // 0F 58: add, 0F 59: mul, 0F 5C: sub, 0F 5D: min, 0F 5E: div, 0F 5F: max
        //   (ps / pd / ss / sd by prefix)
        0x58 | 0x59 | 0x5c..=0x5f => {
            let (reg, rm) = d.modrm(sse_size(pfx), false)?;
            let rm = if matches!(pfx, Pfx::None | Pfx::P66) { align16(rm) } else { rm };
            sse_alu(o, reg, rm, false);
            Ok(())
        }
        // 0F 5A: cvtss2sd (F3) / cvtsd2ss (F2) (merge: a write)
        0x5a => {
            if !matches!(pfx, Pfx::F3 | Pfx::F2) {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(if pfx == Pfx::F3 { 4 } else { 8 }, false)?;
            o.rm(rm, true, false, xbit);
            o.writes |= xmm(reg);
            Ok(())
        }
        // 66 0F 6E: movd / movq xmm, r/m32/64
        0x6e => {
            if pfx != Pfx::P66 {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(if d.w { 8 } else { 4 }, false)?;
            o.rm(rm, true, false, gbit);
            o.writes |= xmm(reg);
            Ok(())
        }
        // 66 0F 7E: movd / movq r/m32/64, xmm; F3 0F 7E: movq xmm, xmm/m64
        0x7e => {
            if pfx == Pfx::P66 {
                let (reg, rm) = d.modrm(if d.w { 8 } else { 4 }, false)?;
                o.rm(rm, false, true, gbit);
                o.reads |= xmm(reg);
            } else if pfx == Pfx::F3 && !d.p66 {
                let (reg, rm) = d.modrm(8, false)?;
                o.rm(rm, true, false, xbit);
                o.writes |= xmm(reg);
            } else {
                return Err(Rule::Unknown);
            }
            Ok(())
        }
        // 0F 80-8F: jcc rel32
        0x80..=0x8f => {
            if d.p66 {
                return Err(Rule::Unknown);
            }
            o.flow = Flow::Branch(d.target(4)?);
            Ok(())
        }
        // 0F 90-9F: setcc Eb
        0x90..=0x9f => {
            let (_, rm) = d.modrm(1, true)?;
            o.rm(rm, false, true, gbit);
            Ok(())
        }
        // 0F A4: shld Ev, Gv, Ib / 0F A5: shld Ev, Gv, CL / 0F AC: shrd Ev, Gv, Ib /
        // 0F AD: shrd Ev, Gv, CL
        0xa4 | 0xa5 | 0xac | 0xad => {
            let (reg, rm) = d.modrm(v, false)?;
            if op & 1 == 0 {
                d.skip(1)?;
            } else {
                o.reads |= gpr(RCX);
            }
            o.rm(rm, true, true, gbit);
            o.reads |= gpr(reg);
            Ok(())
        }
        // 0F AF: imul Gv, Ev
        0xaf => {
            let (reg, rm) = d.modrm(v, false)?;
            o.rm(rm, true, false, gbit);
            o.reads |= gpr(reg);
            o.writes |= gpr(reg);
            Ok(())
        }
        // 0F B6: movzx Gv, Eb / 0F B7: movzx Gv, Ew / 0F BE: movsx Gv, Eb / 0F BF: movsx Gv, Ew
        0xb6 | 0xb7 | 0xbe | 0xbf => {
            let byte = op & 1 == 0;
            let (reg, rm) = d.modrm(if byte { 1 } else { 2 }, byte)?;
            o.rm(rm, true, false, gbit);
            o.writes |= gpr(reg);
            Ok(())
        }
        // F3 0F B8: popcnt Gv, Ev; 0F BC: bsf (F3: tzcnt); 0F BD: bsr (F3: lzcnt)
        0xb8 => {
            if pfx != Pfx::F3 {
                return Err(Rule::Unknown);
            }
            bitscan(d, o, v, false)
        }
        0xbc | 0xbd => {
            if pfx == Pfx::F2 {
                return Err(Rule::Unknown);
            }
            bitscan(d, o, v, pfx != Pfx::F3)
        }
        // 0F C8-CF: bswap r32/r64
        0xc8..=0xcf => {
            if d.p66 || d.f2 || d.f3 {
                return Err(Rule::Unknown);
            }
            let r = (op & 7) | d.b;
            o.reads |= gpr(r);
            o.writes |= gpr(r);
            Ok(())
        }
        // 66 0F D6: movq xmm/m64, xmm
        0xd6 => {
            if pfx != Pfx::P66 {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(8, false)?;
            o.rm(rm, false, true, xbit);
            o.reads |= xmm(reg);
            Ok(())
        }
        // 66 0F EF: pxor xmm, xmm/m128
        0xef => {
            if pfx != Pfx::P66 {
                return Err(Rule::Unknown);
            }
            let (reg, rm) = d.modrm(16, false)?;
            sse_alu(o, reg, align16(rm), true);
            Ok(())
        }
        _ => Err(Rule::Unknown),
    }
}

/// bsf / bsr (which leave the destination unchanged for a zero source: it is read) and
/// popcnt / tzcnt / lzcnt (which do not read it).
#[inline(always)]
fn bitscan(d: &mut D, o: &mut Insn, v: u8, reads_dst: bool) -> Result<(), Rule> {
    let (reg, rm) = d.modrm(v, false)?;
    o.rm(rm, true, false, gbit);
    if reads_dst {
        o.reads |= gpr(reg);
    }
    o.writes |= gpr(reg);
    Ok(())
}

/// The memory size of an SSE arithmetic row by its prefix.
#[inline(always)]
fn sse_size(pfx: Pfx) -> u8 {
    match pfx {
        Pfx::F3 => 4,
        Pfx::F2 => 8,
        _ => 16,
    }
}

/// A packed operand in memory must be 16-byte aligned.
#[inline(always)]
fn align16(rm: Rm) -> Rm {
    match rm {
        Rm::Mem(mut m) => {
            m.align = 16;
            Rm::Mem(m)
        }
        r => r,
    }
}

/// `op xmm, xmm/m`: reads both, writes the first; `zero_idiom` ops on one register
/// read nothing (xorps/xorpd/pxor/andnps x, x).
#[inline(always)]
fn sse_alu(o: &mut Insn, reg: u8, rm: Rm, zero_idiom: bool) {
    if let (Rm::Reg(n), true) = (rm, zero_idiom) {
        if n == reg {
            o.writes |= xmm(reg);
            return;
        }
    }
    o.rm(rm, true, false, xbit);
    o.reads |= xmm(reg);
    o.writes |= xmm(reg);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `general` alone: what `decode_into` gave before the fast path existed.
    fn slow(code: &[u8], at: usize) -> Result<Insn, Rule> {
        let mut o = Insn::EMPTY;
        general(code, at, &mut o)?;
        Ok(o)
    }

    /// A xorshift64 generator from `seed` (not 0): the same bytes every run.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The fast path changes nothing: over random byte strings, most of them steered
    /// into the forms it takes (an optional REX, then one of its opcodes, and ModRM,
    /// immediate and truncation at random), `decode` (fast path first) and `general`
    /// alone give the same instruction or the same rule, at every offset.
    #[test]
    fn fast_path_agrees_with_general() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let ops: &[u8] = &[
            0x01, 0x03, 0x09, 0x0b, 0x11, 0x13, 0x19, 0x1b, 0x21, 0x23, 0x29, 0x2b, 0x31, 0x33, 0x39, 0x3b, 0x83, 0x85,
            0x89, 0x8b, 0xc3, 0x70, 0x75, 0x7f, 0xeb, 0x50, 0x55, 0x57, 0x58, 0x5d, 0x5f, 0x90, 0x98, 0x99, 0xb8, 0xbb,
            0xbf, 0x8d, 0xc1, 0xd1, 0xd3, 0xf7, 0xff, 0xc0, 0xd0, 0xd2, 0xf6, 0xfe, 0x66, 0x0f, 0x40, 0x48, 0x4c, 0xf3,
            0x2e, 0x82, 0x84, 0x88, 0x8a, 0x02, 0x3d, 0xe8, 0xe9,
        ];
        let ops_0f: &[u8] = &[
            0x1f, 0x10, 0x11, 0x28, 0x29, 0x2a, 0x2c, 0x2d, 0x2e, 0x2f, 0x51, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a,
            0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0xef, 0x40, 0x44, 0x4f, 0xaf, 0xae, 0x1e, 0x05, 0x6e, 0x7e, 0xd6, 0xb6, 0xbc,
            0x80,
        ];
        let prefixes: &[u8] = &[0x66, 0xf2, 0xf3, 0x2e, 0x67, 0xf0];
        let mut buf = [0u8; 16];
        let mut taken = 0u64;
        for i in 0..3_000_000u64 {
            for chunk in buf.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            let r = next();
            let mut k = 0;
            if i % 4 == 1 || i % 4 == 2 {
                if r & 1 == 0 {
                    buf[k] = 0x40 | (r >> 8) as u8 & 0xf;
                    k += 1;
                }
                buf[k] = ops[(r >> 16) as usize % ops.len()];
                k += 1;
            } else if i % 4 == 3 {
                if r & 4 == 0 {
                    buf[k] = prefixes[(r >> 40) as usize % prefixes.len()];
                    k += 1;
                }
                if r & 1 == 0 {
                    buf[k] = 0x40 | (r >> 8) as u8 & 0xf;
                    k += 1;
                }
                buf[k] = 0x0f;
                buf[k + 1] = ops_0f[(r >> 16) as usize % ops_0f.len()];
                k += 2;
            }
            if r & 2 == 0 {
                // ModRM mod 3 most of the time.
                buf[k] |= 0xc0;
            }
            // Every length from 1 to 16, so truncation is covered.
            let len = 1 + (r >> 32) as usize % buf.len();
            let code = &buf[..len];
            for at in 0..len.min(2) {
                let mut o = Insn::EMPTY;
                if fast(&code[at..], at, &mut o).is_some() {
                    taken += 1;
                } else {
                    assert_eq!(o, Insn::EMPTY, "fast path wrote before declining: {:02x?} at {at}", code);
                }
                assert_eq!(decode(code, at), slow(code, at), "bytes {:02x?} at {at}", code);
            }
        }
        assert!(taken > 500_000, "the fast path was taken only {taken} times");
    }

    /// `decode_padded` gives `decode`'s result wherever the instruction it decodes ends
    /// inside the code, and where it ends past it (having read the padding, here random
    /// bytes rather than zeros), `decode` rejects the bytes: at every offset of random
    /// code of every length up to 32, steered into the fast path's forms.
    #[test]
    fn padded_decoding_agrees_with_decode() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let common: &[u8] = &[0x48, 0x4c, 0x89, 0x8b, 0x8d, 0x83, 0x31, 0x39, 0x85, 0xc3, 0x75, 0xeb, 0x0f, 0x66, 0xf2];
        let mut buf = [0u8; 48];
        let (mut past, mut inside) = (0u64, 0u64);
        for _ in 0..400_000 {
            for chunk in buf.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            for b in buf.iter_mut() {
                if next() % 3 == 0 {
                    *b = common[next() as usize % common.len()];
                }
            }
            let len = 1 + next() as usize % 32;
            let (code, padded) = (&buf[..len], &buf[..len + 16]);
            for at in 0..len {
                let mut o = Insn::EMPTY;
                match decode_padded(code, padded, at, &mut o) {
                    Ok(n) if at + n as usize > len => {
                        past += 1;
                        assert!(decode(code, at).is_err(), "bytes {:02x?} at {at}: {o:?} past the end", code);
                    }
                    Ok(_) => {
                        inside += 1;
                        assert_eq!(Ok(o), decode(code, at), "bytes {:02x?} at {at}", code);
                    }
                    Err(rule) => assert_eq!(Err(rule), decode(code, at), "bytes {:02x?} at {at}", code),
                }
            }
        }
        assert!(past > 50_000 && inside > 2_000_000, "{past} decoded past the end, {inside} inside");
    }
}
