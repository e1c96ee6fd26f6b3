// Package datafile reads and writes the Parquet data files of Delta tables
// as Arrow records: the part of the Delta protocol below the log.
//
// Write splits a record by partition values into Hive-style directories,
// writes zstd Parquet files (part-<uuid>.zstd.parquet) and returns the add
// actions, with stats, for the caller to commit. Read and Scan turn the add
// actions of a snapshot back into records of exactly the table schema:
// partition values, schema evolution, Parquet encodings of other writers,
// column mapping and deletion vectors are resolved here, so callers see
// logical rows only.
//
// Arrow types (ArrowSchema): string=utf8, long=int64, integer=int32,
// short=int16, byte=int8, float=float32, double=float64, boolean, binary,
// date=date32, timestamp=timestamp[us, UTC], timestamp_ntz=timestamp[us],
// decimal(p,s)=decimal128(p,s), void=null, array=list<element>,
// map=map<key,value>, struct=struct.
//
// Buffer ownership: records returned by Read, and records passed to a Scan
// callback, are reference counted (memory.DefaultAllocator unless
// TableInfo.Allocator is set). Read's caller must Release every record; a
// Scan callback's record is released when the callback returns, so the
// callback must Retain it (or the arrays it keeps) to use it later. Write
// does not retain or release the caller's record. Values taken out of
// records (strings, []byte) alias Arrow buffers and are valid only while
// the record is retained.
//
// Hot paths, in order: per row — partition key formatting in Write (only for
// partitioned tables) and type conversion in Read (only for columns whose
// Parquet type differs from the table type; matching columns are shared,
// not copied); per file — stats accumulation, footer parsing, DV decoding.
//
// Deletion vector formats are drawn in dv.go.
package datafile
