// Package internal pins the project's chosen dependencies in go.mod while
// the packages that use them are being written (never compiled).
package internal

import (
	_ "github.com/apache/arrow-go/v18/parquet/pqarrow"
	_ "github.com/google/uuid"
	_ "github.com/jackc/pglogrepl"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.yaml.in/yaml/v3"
)
