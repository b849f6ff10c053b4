# Fengqiao — the two set-up commands (README): `make run` and `make test`.
.PHONY: run test build bench test-large

# Build (release) and start the server on the embedded defaults: SQLite and ./data,
# HTTP on 127.0.0.1:8080, media on UDP 127.0.0.1:40000. Prints demo invite URLs.
run:
	scripts/deps.sh run
	cargo build --release --locked
	./target/release/fengqiao serve --demo-invites $(if $(CONFIG),--config $(CONFIG))

# Install what the tests need and run every test (see scripts/test.sh).
test:
	scripts/test.sh

build:
	cargo build --release --locked

# The 4.3 GiB disc-export test (tests/disc.rs, #[ignore]d in `make test`): a sparse
# 4.3 GiB recording → DVD-DL image (ISO level 3 multi-extent) → read back whole with
# 7z. Writes the image under $$FQ_LARGE_TMP (default the system temp folder): needs
# about 4.5 GB free there. docs/disc.md gives its time.
test-large:
	scripts/deps.sh test
	cargo build --locked -p fengqiao --test disc
	cargo test --locked -p fengqiao --test disc -- --ignored large_file --nocapture

# Benchmark (not part of `make test`): scripts/bench.sh installs Janus/perf/valgrind
# (scripts/deps.sh bench), builds release, and runs loadgen in a private network
# namespace against our server and Janus 1.1.2, alternated, BENCH_RUNS runs each,
# loadgen pinned to CPU 0 and servers to CPU 1; then the criterion floor.
# Results: bench/results/*.json (+ summary.json); see bench/README.md.
BENCH_SCENARIOS ?= 1x2,10x4,25x4,1x12,1to50,1to20
BENCH_SECONDS ?= 10
BENCH_RUNS ?= 3
bench:
	BENCH_SCENARIOS=$(BENCH_SCENARIOS) BENCH_SECONDS=$(BENCH_SECONDS) BENCH_RUNS=$(BENCH_RUNS) scripts/bench.sh
