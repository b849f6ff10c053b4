# Fengqiao — the two set-up commands (README): `make run` and `make test`.
.PHONY: run test build

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
