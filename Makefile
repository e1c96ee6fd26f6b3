.PHONY: demo test build
demo:
	./scripts/demo.sh
test:
	./scripts/test.sh
build:
	mkdir -p bin && go build -o bin/silt ./cmd/silt
