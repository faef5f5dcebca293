//! The rules: a linear sweep that decodes every byte, then a forward data-flow pass over
//! the reachable instructions that follows the stack, the callee-saved registers and
//! which registers are defined. With the ABI rules and short code, a single pass
//! ([`one_pass`]) that decodes and applies each instruction at once is tried first; it
//! accepts only what the two steps accept and leaves everything else to them.
//!
//! Invariant owned here: [`check`] returns `Ok` only if every rule of the module docs
//! of `validate` holds on every path, for every instruction reached from offset 0.
//!
//! The abstract state before an instruction (kept for the first instruction and each
//! jump target, carried through fall-through otherwise) says, for each GPR, whether it holds the caller's value of a
//! callee-saved register, an address at a known offset from the entry `rsp` (the
//! address of the return address), or something else; which 8-byte frame slots just
//! below the return address hold a caller's callee-saved value; and which registers are
//! defined. Where paths meet, the states are met (equal or "something else", defined
//! only if defined on both); `rsp` must agree. States only ever move down a finite
//! lattice, so the pass ends.

use core::mem::MaybeUninit;

use super::abi::Abi;
use super::decode::{self, Flow, Insn, NONE, Op, RBP, RIP, RSP};
use super::scratch::{self, Buf, Mapped, PAD, STACK_LEN, STACK_NODES};
use super::{FRAME_LIMIT, MAX_LEN, Rule, Violation};

/// A path reaches it.
const REACHED: u8 = 2;
/// Its state changed since it was last processed.
const PENDING: u8 = 4;
/// A `jmp`/`jcc` lands on it: its state is kept in its node and met there. Any other
/// instruction but the first is reached only by falling through from the one before,
/// whose output state is carried straight to it without being stored.
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
    /// Per GPR: `<= 0`: entry rsp + that offset; 1..=6: the caller's value of
    /// `CALLEE_SAVED[v - 1]`; [`OTHER`].
    regs: [i16; 16],
    /// Per slot `[entry - 8 (i + 1), entry - 8 i)`: 0 or a callee-saved tag 1..=6.
    slots: [u8; SLOTS],
    /// Defined registers (GPR bits 0..=15, XMM bits 16..=31).
    defined: u32,
}

impl State {
    const ZERO: State = State { regs: [0; 16], slots: [0; SLOTS], defined: 0 };

    /// The state at entry for `abi`.
    fn entry(abi: Option<Abi>) -> State {
        let mut s = State { regs: [OTHER; 16], slots: [0; SLOTS], defined: 0 };
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

    /// Whether meeting `other` into `self` would change nothing (and not fail): `self`
    /// knows nothing `other` does not.
    #[inline]
    fn below(&self, other: &State) -> bool {
        // Selects and sums rather than branches, so the loops become vector operations.
        let regs = self.regs.iter().zip(other.regs.iter()).fold(0, |n, (a, b)| n | (*a != *b && *a != OTHER) as u8);
        let slots = self.slots.iter().zip(other.slots.iter()).fold(0, |n, (a, b)| n | (*a != *b && *a != 0) as u8);
        regs | slots == 0 && self.defined & !other.defined == 0
    }

    /// Meets `other` into `self`; whether `self` changed.
    #[inline]
    fn meet(&mut self, other: &State) -> Result<bool, Rule> {
        if self == other {
            // Often so where a loop's back edge meets its head the second time.
            return Ok(false);
        }
        let before = *self;
        if self.regs[RSP as usize] != other.regs[RSP as usize] {
            return Err(Rule::StackMismatch);
        }
        // Selects rather than branches, so the loops become a few vector operations.
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            *a = if *a == *b { *a } else { OTHER };
        }
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a = if *a == *b { *a } else { 0 };
        }
        self.defined &= other.defined;
        Ok(*self != before)
    }
}

/// One instruction: decoded once by the sweep, then read by the data-flow pass.
#[derive(Clone, Copy)]
pub(crate) struct Node {
    insn: Insn,
    /// Its offset in the code.
    at: u32,
    /// For a `jmp`/`jcc`: the target's offset after the sweep, its instruction index
    /// after the boundary check.
    target: u32,
    /// For a `jmp`/`jcc`, from the sweep until its target is resolved: the index of
    /// the `jmp`/`jcc` before it ([`NO_JUMP`] for the first), so step 2 visits the
    /// jumps alone. Then, for the first instruction and the [`TARGET`]s a path
    /// reaches: the index of the state kept for it (the state before it, met over the
    /// paths that reach it), set when a path first reaches it.
    slot: u32,
    /// [`REACHED`], [`PENDING`], [`TARGET`].
    flags: u8,
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
    if abi.is_none() && code.len() <= QUICK_LEN {
        // Two bitmaps on the stack, zeroed only as far as the code needs.
        let words = code.len().div_ceil(64);
        let verdict = if code.len() <= STACK_LEN {
            let (mut starts, mut targets) = ([0u64; STACK_LEN / 64], [0u64; STACK_LEN / 64]);
            quick_structural(code, &mut starts[..words], &mut targets[..words])
        } else {
            let (mut starts, mut targets) = ([0u64; QUICK_LEN / 64], [0u64; QUICK_LEN / 64]);
            quick_structural(code, &mut starts[..words], &mut targets[..words])
        };
        if let Some(result) = verdict {
            return result;
        }
    }
    if let (Some(abi), true) = (abi, code.len() <= STACK_LEN) {
        if one_pass_stack(code, abi) {
            return Ok(());
        }
    }
    if code.len() <= STACK_LEN {
        if let Some(result) = run_stack(code, abi) {
            return result;
        }
        // More instructions than the stack holds: start again with a mapping. The sweep
        // stopped before any rule broke (it reports in address order), so nothing is
        // lost.
    }
    let mut mapped = Mapped::new(code.len()).ok_or(at0(Rule::NoScratch))?;
    let (nodes, states, starts, ranks) = mapped.parts();
    // A mapping has room for one node and one state per code byte: it never runs out.
    run(code, abi, nodes, states, starts, ranks).unwrap_or(Err(at0(Rule::NoScratch)))
}

/// [`run`] with scratch on the stack (`None` if it holds too few instructions); out of
/// line, so a check that does not come here does not set up its frame.
#[inline(never)]
fn run_stack(code: &[u8], abi: Option<Abi>) -> Option<Result<(), Violation>> {
    // Nothing here is zeroed but the start bitmap (8 words): short code pays only for
    // its instructions.
    let mut nodes = [const { MaybeUninit::<Node>::uninit() }; STACK_NODES];
    let mut states = [const { MaybeUninit::<State>::uninit() }; STACK_NODES];
    let mut starts = [0u64; STACK_LEN / 64];
    let mut ranks = [0u32; STACK_LEN / 64];
    let words = code.len().div_ceil(64);
    run(code, abi, &mut nodes, &mut states, &mut starts[..words], &mut ranks[..words])
}

/// Code up to this length is first checked by [`quick_structural`] when only the
/// structural rules apply (two bitmaps of 1 KiB each on the stack at most).
const QUICK_LEN: usize = 8192;

/// The structural rules in one sweep that keeps no instruction: every byte decodes (as
/// in `run`), and the starts of instructions and the targets of jumps are marked in two
/// bitmaps (`starts` and `targets`, zeroed, a word per 64 code bytes). Decides where
/// that is enough: a sweep error, or `Ok` when every target is a start, no `int3` is
/// there and the last instruction never falls through (so nothing can reach an `int3`
/// or fall off the end, as in `run`). `None` otherwise (a jump into an instruction, an
/// `int3`, a last instruction that falls through): the full check then finds the
/// verdict and the offset it reports, as the full check alone would.
fn quick_structural(code: &[u8], starts: &mut [u64], targets: &mut [u64]) -> Option<Result<(), Violation>> {
    let mut at = 0;
    let mut traps = false;
    let mut last = Flow::Next;
    while at < code.len() {
        let mut insn = Insn::EMPTY;
        let len = match decode::decode_into(code, at, &mut insn) {
            Ok(len) => len,
            Err(rule) => return Some(Err(Violation { offset: at, rule })),
        };
        let fail = |rule| Some(Err(Violation { offset: at, rule }));
        match insn.flow {
            Flow::Jump(t) | Flow::Branch(t) => {
                if t < 0 || t as usize >= code.len() {
                    return fail(Rule::JumpOutside);
                }
                let t = t as usize;
                targets[t / 64] |= 1 << (t % 64);
            }
            Flow::Call(t) if t != 0 => return fail(Rule::CallTarget),
            Flow::Trap => traps = true,
            _ => {}
        }
        starts[at / 64] |= 1 << (at % 64);
        last = insn.flow;
        at += len as usize;
    }
    if traps || !matches!(last, Flow::Ret | Flow::Jump(_)) {
        return None;
    }
    if targets.iter().zip(starts.iter()).any(|(&t, &s)| t & !s != 0) {
        return None;
    }
    Some(Ok(()))
}

/// The check over scratch `nodes` and `states` (room for the instructions; `states`
/// at least as long as `nodes`) and zeroed `starts` and `ranks` (one each per 64 code
/// bytes). `None` if `nodes` is too short.
fn run(
    code: &[u8],
    abi: Option<Abi>,
    nodes: &mut [MaybeUninit<Node>],
    states: &mut [MaybeUninit<State>],
    starts: &mut [u64],
    ranks: &mut [u32],
) -> Option<Result<(), Violation>> {
    // 1. Linear sweep: every byte belongs to exactly one instruction of the subset;
    //    direct transfers land inside the code, calls only on 0. Each instruction is
    //    decoded here, once.
    let mut list = Buf::new(nodes);
    let mut at = 0;
    // The last jmp/jcc so far; each one's `slot` links to the one before (see `Node`).
    let mut jumps = NO_JUMP;
    let mut traps = false;
    while at < code.len() {
        let i = list.len() as u32;
        // Decoded straight into its node: no copy of the result.
        let node = list.push_mut(Node { insn: Insn::EMPTY, at: at as u32, target: 0, slot: 0, flags: 0 })?;
        let len = match decode::decode_into_outlined(code, at, &mut node.insn) {
            Ok(len) => len,
            Err(rule) => return Some(Err(Violation { offset: at, rule })),
        };
        let fail = |rule| Some(Err(Violation { offset: at, rule }));
        match node.insn.flow {
            Flow::Jump(t) | Flow::Branch(t) => {
                if t < 0 || t as usize >= code.len() {
                    return fail(Rule::JumpOutside);
                }
                node.target = t as u32;
                node.slot = jumps;
                jumps = i;
            }
            Flow::Call(t) if t != 0 => return fail(Rule::CallTarget),
            Flow::Trap => traps = true,
            _ => {}
        }
        starts[at / 64] |= 1 << (at % 64);
        at += len as usize;
    }
    let nodes = list.into_slice();
    // Without the ABI rules, what follows the boundary check can fail only by reaching
    // an int3 or by falling through past the last instruction: with no int3 and a last
    // instruction that never falls through, it cannot, and is skipped.
    let reach = abi.is_some() || traps || !matches!(nodes.last().map(|n| n.insn.flow), Some(Flow::Ret | Flow::Jump(_)));
    if let Err(e) = boundaries(nodes, starts, ranks, jumps, reach) {
        return Some(Err(e));
    }
    if !reach {
        return Some(Ok(()));
    }
    Some(flow(code, abi, nodes, states))
}

/// Forward jumps whose targets the one pass has not reached yet, at most.
const PENDING_JUMPS: usize = 8;
/// Distinct forward targets in one code, at most, for the one pass.
const LANDINGS: usize = 16;
/// States the one pass keeps, at most (see [`one_pass`]): one per 16 code bytes and
/// forward target.
const CHECKPOINTS: usize = STACK_LEN / 16 + LANDINGS;

/// [`one_pass`] with scratch on the stack.
#[inline(always)]
pub(super) fn one_pass_stack(code: &[u8], abi: Abi) -> bool {
    let mut landing = [const { MaybeUninit::<State>::uninit() }; LANDINGS];
    let mut kept = [const { MaybeUninit::<(u32, State)>::uninit() }; CHECKPOINTS];
    let mut bytes = [MaybeUninit::<u8>::uninit(); STACK_LEN + PAD];
    let Some(padded) = scratch::padded(&mut bytes, code) else { return false };
    one_pass(code, padded, abi, &mut landing, &mut kept)
}

/// The ABI check in one pass over the code that decodes each instruction and applies
/// it to the state at once. True only where `run` would return `Ok`; false wherever it
/// cannot tell so cheaply (a rule broken, a backward jump that does not confirm the
/// state its target was checked in, more than [`PENDING_JUMPS`] forward jumps open at
/// once, more forward targets or kept states than there is room for): `run` then
/// decides, so the verdict and its offset are always `run`'s.
///
/// Each instruction is checked once, in address order, in a state `S`: the first in
/// the entry state; one a forward jump reaches in the meet of the states those jumps
/// carry and, unless a `ret` or `jmp` comes before it, the state falling through; any
/// other in the state falling through from the one before (past a `ret` or `jmp`:
/// padding, or a loop body only a later backward jump enters, is checked in the state
/// before that `ret` or `jmp`, an assumption). A backward jump is accepted only if
/// meeting its state into its target's `S` changes nothing.
///
/// Why true means `run`'s `Ok`: then for every edge, into every instruction, `S` of
/// the instruction is at or below (met into: no more known) what the edge carries, and
/// `S` of the first instruction is the entry state. `run` computes the greatest such
/// assignment of states, so its states are at or above these; every check `step`
/// makes passes in a state if it passes in one below it (less known: fewer defined
/// registers, fewer followed values), and each passed here. Instructions nothing
/// reaches are checked here too, which only makes this stricter than `run`.
///
/// States are not kept per instruction (copying one costs more than checking most
/// instructions): only at forward targets and at the first instruction starting in each
/// 16-byte block of the code (so at a loop head, which compilers align to 16 bytes). A
/// backward jump finds its target's `S` by applying the instructions from the nearest
/// kept state before it (none of them a forward target, so the same steps as the first
/// time): the target starts an instruction in its own 16-byte block, so the first one
/// there was kept, at most 15 bytes before it: linear in all.
fn one_pass(
    code: &[u8],
    padded: &[u8],
    abi: Abi,
    landing: &mut [MaybeUninit<State>],
    kept: &mut [MaybeUninit<(u32, State)>],
) -> bool {
    let mut landing = Buf::new(landing);
    let mut kept = Buf::new(kept);
    // Forward jumps not landed yet: (target, index of its state in `landing`), the
    // nearest target last; one entry per target, its state met over the jumps.
    let mut open = [(0u32, 0u32); PENDING_JUMPS];
    let mut pending = 0;
    let mut next_target = u32::MAX;
    let mut s = State::entry(Some(abi));
    let mut live = true;
    // Where the next 16-byte block starts or the nearest forward target is, whichever
    // comes first: an instruction before it is neither kept nor landed on.
    let mut event = 0;
    let mut at = 0;
    while at < code.len() {
        if at >= event {
            if at as u32 >= next_target {
                if at as u32 != next_target {
                    // A forward jump into an instruction.
                    return false;
                }
                pending -= 1;
                let landed = landing.at_mut(open[pending].1 as usize);
                if !live {
                    s = *landed;
                } else if s.meet(landed).is_err() {
                    return false;
                }
                next_target = if pending > 0 { open[pending - 1].0 } else { u32::MAX };
            }
            // The first instruction of a 16-byte block, or a forward target.
            if !kept.push((at as u32, s)) {
                return false;
            }
            event = (next_target as usize).min((at / 16 + 1) * 16);
        }
        live = true;
        let mut insn = Insn::EMPTY;
        let Ok(len) = decode::decode_padded(code, padded, at, &mut insn) else { return false };
        let next = at + len as usize;
        if !apply(code, abi, &insn, at, &mut s) {
            return false;
        }
        match insn.flow {
            Flow::Next | Flow::Call(_) => {}
            Flow::Ret => live = false,
            Flow::Jump(t) | Flow::Branch(t) => {
                if t < 0 || t as usize >= code.len() {
                    return false;
                }
                let t = t as u32;
                if t as usize >= next {
                    // Forward: kept until the pass reaches the target, met per target.
                    let mut k = pending;
                    while k > 0 && open[k - 1].0 < t {
                        k -= 1;
                    }
                    if k > 0 && open[k - 1].0 == t {
                        if landing.at_mut(open[k - 1].1 as usize).meet(&s).is_err() {
                            return false;
                        }
                    } else {
                        if pending == PENDING_JUMPS || !landing.push(s) {
                            return false;
                        }
                        let mut j = pending;
                        while j > k {
                            open[j] = open[j - 1];
                            j -= 1;
                        }
                        open[k] = (t, landing.len() as u32 - 1);
                        pending += 1;
                        next_target = open[pending - 1].0;
                        event = event.min(next_target as usize);
                    }
                } else {
                    // Backward: onto an instruction start whose state this confirms.
                    let Some(target) = state_at(code, padded, abi, kept.as_slice(), t as usize) else { return false };
                    if !target.below(&s) {
                        return false;
                    }
                }
                if let Flow::Jump(_) = insn.flow {
                    live = false;
                }
            }
            Flow::Trap => return false,
        }
        at = next;
    }
    // Nothing falls off the end, no forward jump is left inside the last instruction,
    // and that instruction ends where the code does (`decode_padded` may have read past
    // it).
    !live && pending == 0 && at == code.len()
}

/// One instruction at `at` applied to `s`, as `run` applies it; false if a rule breaks
/// (a `call` other than to 0 and a reachable `int3` included).
#[inline(always)]
fn apply(code: &[u8], abi: Abi, insn: &Insn, at: usize, s: &mut State) -> bool {
    if let Some(result) = register_only(insn, s) {
        return result.is_ok();
    }
    if plain_jump(insn) {
        return true;
    }
    match (insn.flow, insn.op) {
        // A plain ret: what `step` checks for it (it reads only rsp, no argument).
        (Flow::Ret, Op::Other) if insn.reads & Abi::ARG_REGS == 0 => returns(s, abi).is_ok(),
        (Flow::Call(t), _) if t != 0 => false,
        _ => step(code, Some(abi), insn, at, 0, 0, s).is_ok(),
    }
}

/// The one pass's state before the instruction at `target` (already passed), from the
/// nearest state kept at or before it; `None` if `target` is inside an instruction.
#[inline(never)]
fn state_at(code: &[u8], padded: &[u8], abi: Abi, kept: &[(u32, State)], target: usize) -> Option<State> {
    // The nearest kept state is mostly the last or close to it.
    let k = kept.iter().rposition(|&(at, _)| at as usize <= target)?;
    let (mut at, mut s) = (kept[k].0 as usize, kept[k].1);
    while at < target {
        let mut insn = Insn::EMPTY;
        let len = decode::decode_padded(code, padded, at, &mut insn).ok()?;
        if !apply(code, abi, &insn, at, &mut s) {
            return None;
        }
        at += len as usize;
    }
    (at == target).then_some(s)
}

/// No jmp/jcc: the end of the chain of jumps the sweep links through `Node::slot`.
const NO_JUMP: u32 = u32::MAX;

/// Step 2 (see `flow`): every jump lands on an instruction start; the first one in
/// address order that does not is reported. Walks the chain of jumps from `last`, the
/// last one (each node's `slot` links to the jump before it). With `resolve`, each
/// jump's target also becomes an instruction index (the number of starts before it,
/// through per-word `ranks`) and its node is marked [`TARGET`]; the chain is read
/// before any `slot` of a target is written (by `flow`, later).
fn boundaries(
    nodes: &mut [Node],
    starts: &[u64],
    ranks: &mut [u32],
    last: u32,
    resolve: bool,
) -> Result<(), Violation> {
    if last == NO_JUMP {
        return Ok(());
    }
    if resolve {
        let mut count = 0;
        for (rank, word) in ranks.iter_mut().zip(starts) {
            *rank = count;
            count += word.count_ones();
        }
    }
    // The chain runs backwards: the last failure seen is the first in address order.
    let mut bad = None;
    let mut j = last;
    while j != NO_JUMP {
        let node = &nodes[j as usize];
        let (t, before) = (node.target as usize, node.slot);
        let word = starts[t / 64];
        if word >> (t % 64) & 1 == 0 {
            bad = Some(node.at as usize);
        } else if resolve {
            let t = ranks[t / 64] + (word & ((1 << (t % 64)) - 1)).count_ones();
            nodes[j as usize].target = t;
            nodes[t as usize].flags |= TARGET;
        }
        j = before;
    }
    match bad {
        Some(offset) => Err(Violation { offset, rule: Rule::JumpIntoInstruction }),
        None => Ok(()),
    }
}

/// Step 3 over the swept instructions, their jump targets resolved (see `boundaries`).
fn flow(code: &[u8], abi: Option<Abi>, nodes: &mut [Node], states: &mut [MaybeUninit<State>]) -> Result<(), Violation> {
    // 3. Data flow from the entry over reachable instructions, in address order,
    //    rescanning from the lowest state that a backward edge changed.
    let n = nodes.len();
    nodes[0].slot = 0;
    nodes[0].flags |= REACHED | PENDING;
    let mut from = Some(0);
    if abi.is_none() {
        // Without the ABI rules `step` leaves every state as the entry state, so no meet
        // changes one or fails: the same pass reduces to reachability, flags only.
        while let Some(start) = from.take() {
            for i in start..n {
                if nodes[i].flags & PENDING == 0 {
                    continue;
                }
                nodes[i].flags &= !PENDING;
                let at = nodes[i].at as usize;
                let fail = |rule| Violation { offset: at, rule };
                let (a, b) = match nodes[i].insn.flow {
                    Flow::Next | Flow::Call(_) => (Some(i + 1), None),
                    Flow::Jump(_) => (Some(nodes[i].target as usize), None),
                    Flow::Branch(_) => (Some(i + 1), Some(nodes[i].target as usize)),
                    Flow::Ret => (None, None),
                    Flow::Trap => return Err(fail(Rule::Trap)),
                };
                for t in [a, b] {
                    let Some(t) = t else { break };
                    if t >= n {
                        return Err(fail(Rule::FallsOffEnd));
                    }
                    if nodes[t].flags & REACHED == 0 {
                        nodes[t].flags |= REACHED | PENDING;
                        if t <= i {
                            from = Some(from.map_or(t, |f: usize| f.min(t)));
                        }
                    }
                }
            }
        }
        return Ok(());
    }
    // The kept states: the first instruction's and those of the jump targets reached,
    // each added when a path first reaches it (distinct instructions, so no more than
    // `nodes.len() <= states.len()`).
    let mut states = Buf::new(states);
    states.push(State::entry(abi));
    // The state being followed. When an instruction falls through to one that is not a
    // jump target (`carried`), that one has no other predecessor and its state is
    // exactly this output: it is used in place, never stored (the meet a stored state
    // would go through changes nothing, as `step` only ever lowers its output when its
    // input is lowered).
    let mut s = State::ZERO;
    while let Some(start) = from.take() {
        let mut carried = false;
        for i in start..n {
            // An instruction the one before carried into is pending by construction
            // (nothing else reaches it, and its flags are never read): only the others
            // are looked up and cleared.
            if !carried {
                if nodes[i].flags & PENDING == 0 {
                    continue;
                }
                nodes[i].flags &= !PENDING;
                debug_assert!(i == 0 || nodes[i].flags & TARGET != 0);
                s = *states.at_mut(nodes[i].slot as usize);
            }
            let node = &nodes[i];
            let at = node.at as usize;
            let fail = |rule| Violation { offset: at, rule };
            let insn = &node.insn;
            if let Some(result) = register_only(insn, &mut s) {
                result.map_err(fail)?;
                carried = enter(nodes, &mut states, &s, i, i + 1, &mut from).map_err(fail)?;
                continue;
            }
            if plain_jump(insn) {
                // A jmp/jcc: it changes no state; what `step` returns for it, inline.
                let target = node.target as usize;
                if let Flow::Jump(_) = insn.flow {
                    carried = enter(nodes, &mut states, &s, i, target, &mut from).map_err(fail)?;
                } else {
                    carried = enter(nodes, &mut states, &s, i, i + 1, &mut from).map_err(fail)?;
                    enter(nodes, &mut states, &s, i, target, &mut from).map_err(fail)?;
                }
                continue;
            }
            let (a, b) = step(code, abi, &node.insn, at, i, node.target as usize, &mut s).map_err(fail)?;
            // The successors in order: the fall-through first, then a jcc's target.
            carried = false;
            if let Some(a) = a {
                carried = enter(nodes, &mut states, &s, i, a, &mut from).map_err(fail)?;
                if let Some(b) = b {
                    enter(nodes, &mut states, &s, i, b, &mut from).map_err(fail)?;
                }
            }
        }
    }
    Ok(())
}

/// What `step` does for most instructions, without building successors: those that fall
/// through, read and write no memory (a `lea` or `nop` has an operand it does not
/// access), and give no register a followed value except by a copy between registers or
/// a `lea`, neither to rsp. `None` for any other instruction.
#[inline(always)]
fn register_only(insn: &Insn, s: &mut State) -> Option<Result<(), Rule>> {
    let untouched = match insn.mem {
        None => true,
        Some(m) => !m.read && !m.write,
    };
    if insn.flow != Flow::Next || !untouched {
        return None;
    }
    let copy = match insn.op {
        Op::Other => None,
        Op::Mov(d, r) if d != RSP => Some((d, s.regs[r as usize])),
        // As `step` gives it: the address if it is in the frame, read before the write.
        Op::Lea(d) if d != RSP => Some((d, address(s, insn))),
        _ => return None,
    };
    if insn.reads & Abi::ARG_REGS & !s.defined != 0 {
        return Some(Err(Rule::ArgumentUndefined));
    }
    s.defined |= insn.writes;
    if insn.writes & decode::gpr(RSP) != 0 {
        return Some(Err(Rule::StackUnknown));
    }
    let mut written = insn.writes & 0xffff;
    while written != 0 {
        s.regs[written.trailing_zeros() as usize & 15] = OTHER;
        written &= written - 1;
    }
    if let Some((d, v)) = copy {
        s.regs[d as usize] = v;
    }
    Some(Ok(()))
}

/// A `jmp`/`jcc rel` that reads, writes and touches nothing: it changes no state, so
/// `step` has nothing to do for it.
#[inline(always)]
fn plain_jump(insn: &Insn) -> bool {
    matches!(
        (insn.flow, insn.mem, insn.op, insn.reads, insn.writes),
        (Flow::Jump(_) | Flow::Branch(_), None, Op::Other, 0, 0)
    )
}

/// Enters state `s` from instruction `i` into its successor `t` (`nodes.len()`: off the
/// end); whether `t` follows `i` and takes `s` in place (see `flow`).
#[inline(always)]
fn enter(
    nodes: &mut [Node],
    states: &mut Buf<State>,
    s: &State,
    i: usize,
    t: usize,
    from: &mut Option<usize>,
) -> Result<bool, Rule> {
    let Some(node) = nodes.get_mut(t) else { return Err(Rule::FallsOffEnd) };
    if t == i + 1 && node.flags & TARGET == 0 {
        // Carried: `flow` runs it next, without flags (see there).
        return Ok(true);
    }
    let changed = if node.flags & REACHED == 0 {
        // Its state is kept from now on.
        node.slot = states.len() as u32;
        let room = states.push(*s);
        debug_assert!(room, "a state per instruction at most");
        node.flags |= REACHED;
        true
    } else {
        states.at_mut(node.slot as usize).meet(s)?
    };
    if changed {
        node.flags |= PENDING;
        if t <= i {
            *from = Some(from.map_or(t, |f: usize| f.min(t)));
        }
    }
    Ok(false)
}

/// Applies instruction `i` (at offset `at`; a `jmp`/`jcc` to instruction `target`) to
/// `s`; returns the indices of its successors (`i + 1` past the last one: off the end).
#[inline]
fn step(
    code: &[u8],
    abi: Option<Abi>,
    insn: &Insn,
    at: usize,
    i: usize,
    target: usize,
    s: &mut State,
) -> Result<(Option<usize>, Option<usize>), Rule> {
    let next = at + insn.len as usize;
    let succ = match insn.flow {
        Flow::Next => (Some(i + 1), None),
        Flow::Jump(_) => (Some(target), None),
        Flow::Branch(_) => (Some(i + 1), Some(target)),
        Flow::Call(_) => (Some(i + 1), None),
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
    if insn.mem.is_none() && insn.op == Op::Other && !matches!(insn.flow, Flow::Ret | Flow::Call(_)) {
        // Most instructions: registers only, no value the rules follow. What the general
        // path below does for them: every written GPR becomes "something else", and a
        // write to rsp is an unknown change.
        s.defined |= insn.writes;
        if insn.writes & decode::gpr(RSP) != 0 {
            return Err(Rule::StackUnknown);
        }
        let mut written = insn.writes & 0xffff;
        while written != 0 {
            s.regs[written.trailing_zeros() as usize & 15] = OTHER;
            written &= written - 1;
        }
        return Ok(succ);
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
        Flow::Ret => return returns(s, abi).map(|()| succ),
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
    // The one register (other than rsp's own movement) the op gives a followed value.
    let mut set = (NONE, OTHER);
    match insn.op {
        Op::Push(_) => new_rsp = Some(rsp - 8),
        Op::Pop(RSP) => return Err(Rule::StackUnknown),
        Op::Pop(r) => {
            set = (r, loaded(s));
            new_rsp = Some(rsp + 8);
        }
        Op::Mov(d, r) => set = (d, s.regs[r as usize]),
        Op::Load(d) => set = (d, loaded(s)),
        Op::Lea(d) => set = (d, address(s, insn)),
        Op::AddImm(r, imm) => set = (r, added(s.regs[r as usize], imm)),
        Op::Leave => {
            let frame = s.regs[RBP as usize];
            if frame > 0 {
                return Err(Rule::StackUnknown);
            }
            // addr is [rbp], checked above; rbp gets the value saved there.
            set = (RBP, loaded(s));
            new_rsp = Some(frame + 8);
        }
        Op::Other | Op::Store(_) => {}
    }
    let get = |r: u8| if set.0 == r { Some(set.1) } else { None };
    // Every written GPR, in ascending order.
    let mut written = insn.writes & 0xffff;
    while written != 0 {
        let r = written.trailing_zeros() as u8;
        written &= written - 1;
        let v = get(r).unwrap_or(OTHER);
        if r == RSP {
            let v = new_rsp.or(get(RSP)).ok_or(Rule::StackUnknown)?;
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

/// The rules at a `ret` in state `s`: the stack back where it started, every
/// callee-saved register holding the caller's value, the result defined.
#[inline(always)]
fn returns(s: &State, abi: Abi) -> Result<(), Rule> {
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
    Ok(())
}

/// The value a `lea` gives its register: the address if it is in the frame.
#[inline(always)]
fn address(s: &State, insn: &Insn) -> i16 {
    insn.mem.and_then(|m| stack_address(s, &m)).map_or(OTHER, clamp)
}

/// The value of a register holding `v` after `add`/`sub` of `imm`: still a frame
/// address if it was one.
#[inline(always)]
fn added(v: i16, imm: i32) -> i16 {
    if v <= 0 { clamp(v as i64 + imm as i64) } else { OTHER }
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
