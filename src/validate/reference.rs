//! The validator as it was before the speed work (a state per code byte, every
//! instruction decoded again by the data-flow pass), kept verbatim as the reference the
//! optimised `rules` must agree with on every input: same verdict, same offset, same
//! rule. Tests only.

#![allow(clippy::all)]

mod old {
    extern crate std;

    use super::super::abi::Abi;
    use super::super::decode::{self, Flow, Insn, NONE, Op, RBP, RIP, RSP, gpr};
    use super::super::{FRAME_LIMIT, MAX_LEN, Rule, Violation};
    use std::vec;

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
    struct State {
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
    pub(super) fn check(code: &[u8], abi: Option<Abi>) -> Result<(), Violation> {
        let at0 = |rule| Violation { offset: 0, rule };
        if code.is_empty() {
            return Err(at0(Rule::Empty));
        }
        if code.len() > MAX_LEN {
            return Err(at0(Rule::TooLarge));
        }
        let mut states = vec![State::ZERO; code.len()];
        run(code, abi, &mut states)
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
        if a < rsp - RED_ZONE || a < -(FRAME_LIMIT as i64) - RED_ZONE || a + size > 0 || (a + 8) % mem.align as i64 != 0
        {
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
}

mod tests {
    extern crate std;
    use super::super::abi::{Abi, Class};
    use super::super::{decode, rules};
    use std::vec::Vec;

    /// xorshift64*, seeded: the same cases every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn abis() -> [Option<Abi>; 6] {
        [
            None,
            Some(Abi::of(&[], Class::Unit)),
            Some(Abi::of(&[Class::Int, Class::Int], Class::Int)),
            Some(Abi::of(&[Class::Int; 6], Class::Int)),
            Some(Abi::of(&[Class::Float, Class::Int, Class::Float], Class::Float)),
            Some(Abi::of(&[Class::Int], Class::Unit)),
        ]
    }

    fn agree(code: &[u8]) {
        for abi in abis() {
            assert_eq!(rules::check(code, abi), super::old::check(code, abi), "{code:02x?} {abi:?}");
        }
    }

    /// The fixture's compiler output, cut into instructions, plus the stack and frame
    /// idioms the ABI rules follow: the pool random functions are drawn from.
    fn pool() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/validate");
        let mut pool: Vec<Vec<u8>> = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for p in files.iter().filter(|p| p.extension().is_some_and(|x| x == "bin")) {
            let code = std::fs::read(p).unwrap();
            agree(&code);
            let mut at = 0;
            while let Ok(insn) = decode::decode(&code, at) {
                pool.push(code[at..at + insn.len as usize].to_vec());
                at += insn.len as usize;
            }
        }
        let idioms: [&[u8]; 26] = [
            &[0x48, 0x81, 0xec, 0xf0, 0x07, 0, 0], // sub rsp, 2032
            &[0x48, 0x81, 0xec, 0, 0x10, 0, 0],    // sub rsp, 4096
            &[0x53],                               // push rbx
            &[0x5b],                               // pop rbx
            &[0x55],                               // push rbp
            &[0x5d],                               // pop rbp
            &[0x41, 0x54],                         // push r12
            &[0x41, 0x5c],                         // pop r12
            &[0x48, 0x89, 0xe5],                   // mov rbp, rsp
            &[0x48, 0x89, 0xec],                   // mov rsp, rbp
            &[0x48, 0x83, 0xec, 0x18],             // sub rsp, 24
            &[0x48, 0x83, 0xc4, 0x18],             // add rsp, 24
            &[0x48, 0x83, 0xec, 0x08],             // sub rsp, 8
            &[0x48, 0x83, 0xc4, 0x08],             // add rsp, 8
            &[0xc9],                               // leave
            &[0xc3],                               // ret
            &[0xcc],                               // int3
            &[0x48, 0x89, 0x1c, 0x24],             // mov [rsp], rbx
            &[0x48, 0x8b, 0x1c, 0x24],             // mov rbx, [rsp]
            &[0x48, 0x89, 0x5d, 0xf8],             // mov [rbp-8], rbx
            &[0x48, 0x8b, 0x5d, 0xf8],             // mov rbx, [rbp-8]
            &[0x48, 0x8d, 0x65, 0xf8],             // lea rsp, [rbp-8]
            &[0x31, 0xc0],                         // xor eax, eax
            &[0x48, 0x89, 0xf8],                   // mov rax, rdi
            &[0x89, 0x07],                         // mov [rdi], eax
            &[0xe8, 0, 0, 0, 0],                   // call (rel patched below)
        ];
        pool.extend(idioms.iter().map(|i| i.to_vec()));
        pool
    }

    /// Random functions from the pool, with jumps and calls pointed at random offsets
    /// and random bytes overwritten: both versions give the same answer on each.
    #[test]
    fn optimised_rules_agree_with_the_reference() {
        let pool = pool();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut code = Vec::new();
        for case in 0..60_000 {
            code.clear();
            let n = 1 + rng.below(if case % 16 == 0 { 200 } else { 24 });
            for _ in 0..n {
                let k = rng.below(pool.len() + 3);
                if k < pool.len() {
                    code.extend_from_slice(&pool[k]);
                } else if k <= pool.len() + 1 {
                    // jcc / jmp rel8, mostly to somewhere in the code (or just past it).
                    let rel = rng.below(code.len() + 40) as i64 - code.len() as i64 - 2;
                    let op = if k == pool.len() { 0x70 + rng.below(16) as u8 } else { 0xeb };
                    code.extend_from_slice(&[op, rel.clamp(-128, 127) as i8 as u8]);
                } else {
                    let end = code.len() as i32 + 5;
                    code.push(0xe8); // call own start (mostly)
                    let rel = if rng.below(8) == 0 { rng.next() as i32 % 64 } else { -end };
                    code.extend_from_slice(&rel.to_le_bytes());
                }
            }
            if rng.below(2) == 0 {
                code.push(0xc3);
            }
            for _ in 0..rng.below(3) {
                let at = rng.below(code.len());
                code[at] = rng.next() as u8;
            }
            agree(&code);
        }
        // Plain random bytes, and long code (the mapped scratch and the fallback from
        // the stack when short code holds many instructions).
        for _ in 0..20_000 {
            let len = 1 + rng.below(40);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            agree(&bytes);
        }
        for len in [129, 200, 255, 256, 257, 511, 512, 513, 1000, 5000] {
            let mut nops = std::vec![0x90u8; len];
            agree(&nops);
            *nops.last_mut().unwrap() = 0xc3;
            agree(&nops);
            nops[len / 2] = 0xcc;
            agree(&nops);
        }
    }

    /// Code shaped like compiled loops, where the one pass (`rules::one_pass_stack`)
    /// assumes a state for code it has not reached and backward jumps confirm it or not:
    /// `head; jmp L2; L1: body; ret; L2: tail; j(cc) L1; ...` and `head; L1: body;
    /// jcc L1; tail; ret`, each part drawn from stack and register idioms. Whatever the
    /// one pass accepts, the reference accepts, and `check` agrees with the reference;
    /// both the one pass accepting and declining code the reference accepts happen.
    #[test]
    fn the_one_pass_accepts_only_what_the_reference_accepts() {
        let parts: [&[u8]; 16] = [
            &[0x50],                   // push rax
            &[0x53],                   // push rbx
            &[0x59],                   // pop rcx
            &[0x5b],                   // pop rbx
            &[0x31, 0xd2],             // xor edx, edx
            &[0x31, 0xc0],             // xor eax, eax
            &[0x48, 0x89, 0xd0],       // mov rax, rdx
            &[0x48, 0x89, 0xf8],       // mov rax, rdi
            &[0x48, 0x01, 0xf8],       // add rax, rdi
            &[0xbb, 1, 0, 0, 0],       // mov ebx, 1
            &[0x48, 0x89, 0xe3],       // mov rbx, rsp
            &[0x48, 0x89, 0xdc],       // mov rsp, rbx
            &[0x48, 0x83, 0xec, 0x08], // sub rsp, 8
            &[0x48, 0x83, 0xc4, 0x08], // add rsp, 8
            &[0x48, 0xff, 0xcf],       // dec rdi
            &[0x90],                   // nop
        ];
        let mut rng = Rng(0x5eed_0f_100b);
        let (mut one_pass, mut declined, mut code) = (0, 0, Vec::new());
        let part = |rng: &mut Rng, code: &mut Vec<u8>| {
            for _ in 0..rng.below(4) {
                code.extend_from_slice(parts[rng.below(parts.len())]);
            }
        };
        for case in 0..40_000 {
            code.clear();
            part(&mut rng, &mut code);
            if case % 2 == 0 {
                // head; jmp L2; L1: body; ret; L2: tail; jmp/jcc L1; [ret]
                let jmp = code.len();
                code.extend_from_slice(&[0xeb, 0]);
                let l1 = code.len();
                part(&mut rng, &mut code);
                code.push(0xc3);
                code[jmp + 1] = (code.len() - l1) as u8;
                part(&mut rng, &mut code);
                let back = l1 as i64 - (code.len() as i64 + 2);
                code.extend_from_slice(&[if rng.below(2) == 0 { 0xeb } else { 0x75 }, back as i8 as u8]);
                if rng.below(2) == 0 {
                    code.push(0xc3);
                }
            } else {
                // head; L1: body; jcc L1; tail; ret
                let l1 = code.len();
                part(&mut rng, &mut code);
                let back = l1 as i64 - (code.len() as i64 + 2);
                code.extend_from_slice(&[0x75, back as i8 as u8]);
                part(&mut rng, &mut code);
                code.push(0xc3);
            }
            for abi in abis().into_iter().flatten() {
                let reference = super::old::check(&code, Some(abi));
                if rules::one_pass_stack(&code, abi) {
                    assert_eq!(reference, Ok(()), "{code:02x?} {abi:?}");
                    one_pass += 1;
                } else if reference.is_ok() {
                    declined += 1;
                }
                assert_eq!(rules::check(&code, Some(abi)), reference, "{code:02x?} {abi:?}");
            }
        }
        assert!(one_pass > 5_000 && declined > 500, "{one_pass} accepted in one pass, {declined} declined");
    }

    /// The one pass decides every function of the compiler fixture with its own
    /// signature (what the speed figures in `docs/validator.md` rest on).
    #[test]
    fn the_one_pass_decides_the_compiler_fixture() {
        use Class::{Float as F, Int as I};
        let list: [(&str, &[Class], Class); 20] = [
            ("add_i32.gcc", &[I, I], I),
            ("mul_add.gcc", &[I, I, I], I),
            ("udiv.gcc", &[I, I], I),
            ("sdiv.gcc", &[I, I], I),
            ("sum_to.gcc", &[I], I),
            ("collatz.gcc", &[I], I),
            ("clamp.gcc", &[I, I, I], I),
            ("max6.gcc", &[I, I, I, I, I, I], I),
            ("lerp.gcc", &[F, F, F], F),
            ("mixf.gcc", &[F, F, I], F),
            ("poly.gcc", &[F, I], F),
            ("f64_to_i64.gcc", &[F], I),
            ("popcount_loop.gcc", &[I], I),
            ("r_add_i32.rustc", &[I, I], I),
            ("r_gcd.rustc", &[I, I], I),
            ("r_sum_sq.rustc", &[I], I),
            ("r_select.rustc", &[I, I, I], I),
            ("r_hypot2.rustc", &[F, F], F),
            ("r_scale.rustc", &[F, I], F),
            ("r_mix.rustc", &[I, I, I, I], I),
        ];
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/validate");
        for (name, args, ret) in list {
            let code = std::fs::read(std::format!("{dir}/{name}.bin")).unwrap();
            assert!(rules::one_pass_stack(&code, Abi::of(args, ret)), "{name}");
        }
    }

    /// The kept scratch mapping is used by one check at a time: threads checking
    /// different mid-size code at once, each with a different verdict, all get their own
    /// code's answer, the reference's.
    #[test]
    fn kept_scratch_is_not_shared() {
        let pool = pool();
        let codes: Vec<Vec<u8>> = (0..8u64)
            .map(|k| {
                let mut rng = Rng(0x1234_5678 + k);
                let mut code = Vec::new();
                while code.len() < 600 + 300 * k as usize {
                    code.extend_from_slice(&pool[rng.below(pool.len())]);
                }
                code.push(0xc3);
                code
            })
            .collect();
        let expected: Vec<_> =
            codes.iter().map(|c| (super::old::check(c, None), super::old::check(c, abis()[2]))).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (codes, expected) = (&codes, &expected);
                s.spawn(move || {
                    for round in 0..300 {
                        let k = (t * 3 + round) % codes.len();
                        let got = (rules::check(&codes[k], None), rules::check(&codes[k], abis()[2]));
                        assert_eq!(got, expected[k], "code {k}");
                    }
                });
            }
        });
        let rules: Vec<_> = expected.iter().map(|e| (e.0.map_err(|v| v.offset), e.1.map_err(|v| v.offset))).collect();
        // The codes differ in their verdicts or offsets, so a shared scratch would show.
        assert!(rules.windows(2).any(|w| w[0] != w[1]), "{rules:?}");
    }
}
