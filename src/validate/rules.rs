//! The rules: a linear sweep that decodes every byte, then a forward data-flow pass over
//! the reachable instructions that follows the stack, the callee-saved registers and
//! which registers are defined.
//!
//! Invariant owned here: [`check`] returns `Ok` only if every rule of the module docs
//! of `validate` holds on every path, for every instruction reached from offset 0.
//!
//! The abstract state at an instruction (one [`State`] per code byte, used where an
//! instruction starts) says, for each GPR, whether it holds the caller's value of a
//! callee-saved register, an address at a known offset from the entry `rsp` (the
//! address of the return address), or something else; which 8-byte frame slots just
//! below the return address hold a caller's callee-saved value; and which registers are
//! defined. Where paths meet, the states are met (equal or "something else", defined
//! only if defined on both); `rsp` must agree. States only ever move down a finite
//! lattice, so the pass ends.

use super::abi::Abi;
use super::decode::{self, Flow, Insn, NONE, Op, RBP, RIP, RSP, gpr};
use super::scratch::{Mapped, STACK_LEN};
use super::{FRAME_LIMIT, MAX_LEN, Rule, Violation};

/// An instruction starts here.
const START: u8 = 1;
/// A path reaches it.
const REACHED: u8 = 2;
/// Its state changed since it was last processed.
const PENDING: u8 = 4;
/// A direct jump lands here.
const TARGET: u8 = 8;

/// "Something else": no value the rules follow.
const OTHER: i16 = i16::MAX;
/// Tracked frame slots: the 16 eight-byte slots below the return address.
const SLOTS: usize = 16;
/// The red zone below `rsp`.
const RED_ZONE: i64 = 128;

/// Callee-saved registers and their tags 1..=6: rbx, rbp, r12, r13, r14, r15.
const CALLEE_SAVED: [u8; 6] = [3, 5, 12, 13, 14, 15];

/// The abstract state before one instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct State {
    flags: u8,
    /// The length of the instruction starting here.
    len: u8,
    /// Per GPR: `<= 0`: entry rsp + that offset; 1..=6: the caller's value of
    /// `CALLEE_SAVED[v - 1]`; [`OTHER`].
    regs: [i16; 16],
    /// Per slot `[entry - 8 (i + 1), entry - 8 i)`: 0 or a callee-saved tag 1..=6.
    slots: [u8; SLOTS],
    /// Defined registers (GPR bits 0..=15, XMM bits 16..=31).
    defined: u32,
}

impl State {
    const ZERO: State = State { flags: 0, len: 0, regs: [0; 16], slots: [0; SLOTS], defined: 0 };

    /// The state at entry for `abi`.
    fn entry(abi: Option<Abi>) -> State {
        let mut s =
            State { flags: START | REACHED | PENDING, len: 0, regs: [OTHER; 16], slots: [0; SLOTS], defined: 0 };
        s.regs[RSP as usize] = 0;
        for (k, &r) in CALLEE_SAVED.iter().enumerate() {
            s.regs[r as usize] = k as i16 + 1;
        }
        if let Some(abi) = abi {
            // Everything that is not an argument register or the result register holds
            // something (harmless garbage at worst); arguments hold what F defines.
            s.defined = (!Abi::ARG_REGS & !abi.ret) | abi.args;
        }
        s
    }

    /// Meets `other` into `self`; whether `self` changed.
    fn meet(&mut self, other: &State) -> Result<bool, Rule> {
        let before = *self;
        if self.regs[RSP as usize] != other.regs[RSP as usize] {
            return Err(Rule::StackMismatch);
        }
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            if a != b {
                *a = OTHER;
            }
        }
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            if a != b {
                *a = 0;
            }
        }
        self.defined &= other.defined;
        Ok(*self != before)
    }
}

/// Checks `code`: the structural rules, and with `abi` the memory and ABI rules too.
pub(crate) fn check(code: &[u8], abi: Option<Abi>) -> Result<(), Violation> {
    let at0 = |rule| Violation { offset: 0, rule };
    if code.is_empty() {
        return Err(at0(Rule::Empty));
    }
    if code.len() > MAX_LEN {
        return Err(at0(Rule::TooLarge));
    }
    // Zeroing scratch costs more than checking short code: size it to the code.
    if code.len() <= 32 {
        on_stack::<32>(code, abi)
    } else if code.len() <= 64 {
        on_stack::<64>(code, abi)
    } else if code.len() <= 128 {
        on_stack::<128>(code, abi)
    } else if code.len() <= STACK_LEN {
        on_stack::<STACK_LEN>(code, abi)
    } else {
        let mut mapped = Mapped::new(code.len()).ok_or(at0(Rule::NoScratch))?;
        run(code, abi, mapped.states())
    }
}

fn on_stack<const N: usize>(code: &[u8], abi: Option<Abi>) -> Result<(), Violation> {
    let mut states = [State::ZERO; N];
    run(code, abi, &mut states[..code.len()])
}

fn run(code: &[u8], abi: Option<Abi>, states: &mut [State]) -> Result<(), Violation> {
    // 1. Linear sweep: every byte belongs to exactly one instruction of the subset;
    //    direct transfers land inside the code, calls only on 0.
    let mut at = 0;
    let mut targets = false;
    while at < code.len() {
        let insn = decode::decode(code, at).map_err(|rule| Violation { offset: at, rule })?;
        let fail = |rule| Err(Violation { offset: at, rule });
        match insn.flow {
            Flow::Jump(t) | Flow::Branch(t) => {
                if t < 0 || t as usize >= code.len() {
                    return fail(Rule::JumpOutside);
                }
                states[t as usize].flags |= TARGET;
                targets = true;
            }
            Flow::Call(t) if t != 0 => return fail(Rule::CallTarget),
            _ => {}
        }
        states[at].flags |= START;
        states[at].len = insn.len;
        at += insn.len as usize;
    }
    // 2. Every jump lands on an instruction start. Only if one does not, find the first
    //    such jump for the report.
    if targets && states.iter().any(|s| s.flags & (TARGET | START) == TARGET) {
        let mut at = 0;
        while at < code.len() {
            if let Flow::Jump(t) | Flow::Branch(t) = decode(code, at).flow {
                if states[t as usize].flags & START == 0 {
                    return Err(Violation { offset: at, rule: Rule::JumpIntoInstruction });
                }
            }
            at += states[at].len as usize;
        }
    }
    // 3. Data flow from the entry over reachable instructions, in address order,
    //    rescanning from the lowest state that a backward edge changed.
    let len0 = states[0].len;
    states[0] = State::entry(abi);
    states[0].len = len0;
    let mut from = Some(0);
    while let Some(start) = from.take() {
        let mut at = start;
        while at < code.len() {
            let next = at + states[at].len as usize;
            if states[at].flags & PENDING != 0 {
                states[at].flags &= !PENDING;
                let insn = decode(code, at);
                let fail = |rule| Violation { offset: at, rule };
                let mut s = states[at];
                let succ = step(code, abi, &insn, at, &mut s).map_err(fail)?;
                let (a, b) = succ;
                for t in [a, b].into_iter().flatten() {
                    if t >= code.len() {
                        return Err(fail(Rule::FallsOffEnd));
                    }
                    let target = &mut states[t];
                    let changed = if target.flags & REACHED == 0 {
                        let (flags, len) = (target.flags, target.len);
                        *target = s;
                        target.flags = flags | REACHED;
                        target.len = len;
                        true
                    } else {
                        target.meet(&s).map_err(fail)?
                    };
                    if changed {
                        target.flags |= PENDING;
                        if t <= at {
                            from = Some(from.map_or(t, |f: usize| f.min(t)));
                        }
                    }
                }
            }
            at = next;
        }
    }
    Ok(())
}

/// Decodes an instruction that the sweep already accepted.
fn decode(code: &[u8], at: usize) -> Insn {
    match decode::decode(code, at) {
        Ok(insn) => insn,
        // The sweep decoded this same instruction; decoding is a pure function.
        Err(_) => unreachable!("the sweep accepted every instruction start"),
    }
}

/// Applies one reached instruction to `s`; returns its successors.
fn step(
    code: &[u8],
    abi: Option<Abi>,
    insn: &Insn,
    at: usize,
    s: &mut State,
) -> Result<(Option<usize>, Option<usize>), Rule> {
    let next = at + insn.len as usize;
    let succ = match insn.flow {
        Flow::Next => (Some(next), None),
        Flow::Jump(t) => (Some(t as usize), None),
        Flow::Branch(t) => (Some(next), Some(t as usize)),
        Flow::Call(_) => (Some(next), None),
        Flow::Ret => (None, None),
        Flow::Trap => return Err(Rule::Trap),
    };
    let Some(abi) = abi else {
        return Ok(succ);
    };
    // Argument registers F leaves undefined may not be read before they are written.
    if insn.reads & Abi::ARG_REGS & !s.defined != 0 {
        return Err(Rule::ArgumentUndefined);
    }
    // The memory operand, if the instruction touches memory. A ret reads the return
    // address itself, which the ret rule checks through rsp.
    let mut addr = None;
    if let Some(mem) = insn.mem {
        if (mem.read || mem.write) && insn.flow != Flow::Ret {
            addr = Some(memory(code, s, &mem, next, insn.op == Op::Leave)?);
        }
    }
    match insn.flow {
        Flow::Ret => {
            if s.regs[RSP as usize] != 0 {
                return Err(Rule::Unbalanced);
            }
            for (k, &r) in CALLEE_SAVED.iter().enumerate() {
                if s.regs[r as usize] != k as i16 + 1 {
                    return Err(Rule::CalleeSaved);
                }
            }
            if s.defined & abi.ret != abi.ret {
                return Err(Rule::ReturnUndefined);
            }
            return Ok(succ);
        }
        Flow::Call(_) => {
            let rsp = s.regs[RSP as usize] as i64;
            if (rsp + 8) % 16 != 0 {
                return Err(Rule::CallAlignment);
            }
            // The callee is this same function: by the rules it returns with rsp back,
            // the callee-saved registers restored and the caller-saved ones clobbered.
            // It may write anything below the call's rsp.
            for r in 0..16u8 {
                if !CALLEE_SAVED.contains(&r) && r != RSP {
                    s.regs[r as usize] = OTHER;
                }
            }
            s.defined = u32::MAX;
            clobber_below(s, rsp);
            return Ok(succ);
        }
        _ => {}
    }
    s.defined |= insn.writes;
    // Register values.
    let rsp = s.regs[RSP as usize];
    let slot_of = |a: Option<i64>| -> Option<usize> {
        let a = a?;
        if a < 0 && a >= -(8 * SLOTS as i64) && a % 8 == 0 { Some((-a / 8 - 1) as usize) } else { None }
    };
    // Stack-slot writes first (a push writes below the old rsp).
    if let (Some(mem), Some(a)) = (insn.mem, addr) {
        if mem.write {
            clobber(s, a, mem.size as i64);
            let tag = match insn.op {
                Op::Push(r) | Op::Store(r) if r != NONE => s.regs[r as usize],
                _ => 0,
            };
            if let (Some(i), 1..=6) = (slot_of(Some(a)), tag) {
                if mem.size == 8 {
                    s.slots[i] = tag as u8;
                }
            }
        }
    }
    let mut new_rsp: Option<i16> = None;
    let loaded = |s: &State| -> i16 {
        match slot_of(addr) {
            Some(i) if s.slots[i] != 0 => s.slots[i] as i16,
            _ => OTHER,
        }
    };
    let mut set = [None::<i16>; 16];
    match insn.op {
        Op::Push(_) => new_rsp = Some(rsp - 8),
        Op::Pop(RSP) => return Err(Rule::StackUnknown),
        Op::Pop(r) => {
            set[r as usize] = Some(loaded(s));
            new_rsp = Some(rsp + 8);
        }
        Op::Mov(d, r) => set[d as usize] = Some(s.regs[r as usize]),
        Op::Load(d) => set[d as usize] = Some(loaded(s)),
        Op::Lea(d) => {
            let v = insn.mem.and_then(|m| stack_address(s, &m)).map_or(OTHER, clamp);
            set[d as usize] = Some(v);
        }
        Op::AddImm(r, imm) => {
            let v = s.regs[r as usize];
            set[r as usize] = Some(if v <= 0 { clamp(v as i64 + imm as i64) } else { OTHER });
        }
        Op::Leave => {
            let frame = s.regs[RBP as usize];
            if frame > 0 {
                return Err(Rule::StackUnknown);
            }
            // addr is [rbp], checked above; rbp gets the value saved there.
            set[RBP as usize] = Some(loaded(s));
            new_rsp = Some(frame + 8);
        }
        Op::Other | Op::Store(_) => {}
    }
    for r in 0..16u8 {
        if insn.writes & gpr(r) == 0 {
            continue;
        }
        let v = set[r as usize].unwrap_or(OTHER);
        if r == RSP {
            let v = new_rsp.or(set[RSP as usize]).ok_or(Rule::StackUnknown)?;
            if v > 0 {
                // Not a frame address (a callee-saved value, or unknown).
                return Err(Rule::StackUnknown);
            }
            if (v as i64) < -(FRAME_LIMIT as i64) {
                return Err(Rule::FrameTooLarge);
            }
            s.regs[RSP as usize] = v;
        } else {
            s.regs[r as usize] = v;
        }
    }
    Ok(succ)
}

/// Keeps an address offset inside the range the state can express.
fn clamp(v: i64) -> i16 {
    if (-(FRAME_LIMIT as i64) - 4096..=0).contains(&v) { v as i16 } else { OTHER }
}

/// The entry-relative address of a memory operand based on a frame address, if it is.
fn stack_address(s: &State, mem: &decode::Mem) -> Option<i64> {
    if mem.base == NONE || mem.base == RIP || mem.index != NONE {
        return None;
    }
    let base = s.regs[mem.base as usize];
    if base > 0 {
        return None;
    }
    Some(base as i64 + mem.disp as i64)
}

/// Checks a memory operand; returns its entry-relative address when it is in the frame.
fn memory(code: &[u8], s: &State, mem: &decode::Mem, next: usize, leave: bool) -> Result<i64, Rule> {
    let size = mem.size as i64;
    if mem.base == RIP {
        // A constant inside the function's own bytes (the page starts page-aligned, so
        // an offset's alignment is the address's).
        let a = next as i64 + mem.disp as i64;
        if mem.write || mem.index != NONE || a < 0 || a + size > code.len() as i64 || a % mem.align as i64 != 0 {
            return Err(Rule::Memory);
        }
        return Ok(i64::MIN);
    }
    let mut a = stack_address(s, mem).ok_or(Rule::Memory)?;
    if leave {
        // leave reads [rbp] after setting rsp to rbp.
        a = s.regs[RBP as usize] as i64;
    }
    let rsp = if leave { a } else { s.regs[RSP as usize] as i64 };
    // Inside [rsp - red zone, return address) and inside the bounded frame; aligned
    // where the instruction needs it (entry rsp is 8 mod 16 under the ABI).
    if a < rsp - RED_ZONE || a < -(FRAME_LIMIT as i64) - RED_ZONE || a + size > 0 || (a + 8) % mem.align as i64 != 0 {
        return Err(Rule::Memory);
    }
    Ok(a)
}

/// A write of `size` bytes at `a` ends what any slot it touches held.
fn clobber(s: &mut State, a: i64, size: i64) {
    for i in 0..SLOTS {
        let lo = -8 * (i as i64 + 1);
        if a < lo + 8 && a + size > lo {
            s.slots[i] = 0;
        }
    }
}

/// Everything below `rsp` (a call's callee frame and red zone) is clobbered.
fn clobber_below(s: &mut State, rsp: i64) {
    for i in 0..SLOTS {
        let lo = -8 * (i as i64 + 1);
        if lo < rsp {
            s.slots[i] = 0;
        }
    }
}
