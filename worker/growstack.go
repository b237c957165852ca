package worker

// growStackFrame is the frame growStack puts on the stack: 16 KiB, so that a task's
// goroutine gets a 32 KiB stack at once. A send goes deeper than 16 KiB: with an
// 8 KiB frame (a 16 KiB stack) the handler's stack still grew on every send.
const growStackFrame = 16 << 10

// growStack grows the calling goroutine's stack in one step, while the goroutine is
// still shallow. asynq runs every task in a goroutine of its own, whose stack starts
// small; a send or a poll then goes deep (the middleware, the retries of its Redis
// writes, go-redis, net/http), and the runtime grows the stack by doubling it, each
// time copying the deep stack and adjusting every frame on it. A frame of
// growStackFrame bytes here makes the runtime allocate the size the handler needs at
// once and copy only the few frames above it: the technique of CockroachDB's
// util/growstack. It took the handler's share of row 1's CPU in stack growth from
// 2.4–4.1 % to under 1 % (BENCHMARKS.md, "4 December 2026, night"; BenchmarkGrowStack
// shows the mechanism on the Go version at hand). The byte it returns keeps the frame
// from being optimised away; callers ignore it.
//
//go:noinline
func growStack(i int) byte {
	var buf [growStackFrame]byte
	buf[i%len(buf)] = 1
	return buf[(i+1)%len(buf)]
}
