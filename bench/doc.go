// Package bench is sockmux's benchmark suite (issue 6): it measures
// sockmux side by side with its baselines, each in the same run, and
// writes one table to docs/benchmarks.md.
//
// Everything is in the package's tests, which do nothing unless asked:
//
//	make bench                                   # the whole suite, one table
//	go test -run '^$' -bench . ./bench/          # the library-level benchmarks alone
//	SOCKMUX_BENCH=1 go test -v -run TestSuite ./bench/
//
// SOCKMUX_BENCH_QUICK=1 makes every run short, SOCKMUX_BENCH_ONLY a
// regular expression picks the parts to run (tcp, idle, fifo, tcp-e2e,
// serial 115200, ...); either way the table goes to a temporary file, not
// the docs. SOCKMUX_BIN names the binary to measure (default: built from
// ../cmd/sockmux), SOCKMUX_BENCH_DOC where the table is written.
//
// The library-level benchmarks (BenchmarkTCP, BenchmarkIdleStreams) run
// on every platform and print benchstat-friendly lines. The suite
// (TestSuite) drives the real binary end to end over virtual serial
// cables and FIFOs, so it needs Linux.
package bench
