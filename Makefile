.PHONY: demo test build bench bench-full
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
build:
	mkdir -p bin && go build -o bin/silt ./cmd/silt
# Quick (a few minutes): one table, silt vs baselines measured in the same run.
bench:
	./scripts/bench.sh $(ARGS)
bench-full:
	./scripts/bench.sh --full $(ARGS)
