package store

import badger "github.com/dgraph-io/badger/v4"

// Memory is Badger's memory budget. Badger's defaults suit a large
// dedicated database host (64 MiB memtables x 5, a 256 MiB block cache,
// unbounded table indexes, 1 GiB memory-mapped value-log files, 4
// compactors); on a school server beside other services they let RSS reach
// 3-4.5 GB after heavy ingest. These bound it (docs/storage.md).
type Memory struct {
	MemTableSize            int64 // each memtable (also its on-disk log)
	NumMemtables            int   // memtables held before writes stall
	BlockCacheSize          int64 // decompressed/decrypted blocks
	IndexCacheSize          int64 // table indexes and bloom filters; -1: none, all kept in memory
	NumCompactors           int   // at least 2
	ValueLogFileSize        int64 // value log file size (mapped at twice this while written)
	BaseTableSize           int64
	NumLevelZeroTables      int
	NumLevelZeroTablesStall int
}

// DefaultMemory is the school-server budget: about 48 MiB of memtables,
// 64 MiB block cache and 32 MiB index cache.
var DefaultMemory = Memory{
	MemTableSize: 16 << 20, NumMemtables: 3,
	BlockCacheSize: 64 << 20, IndexCacheSize: 32 << 20,
	NumCompactors: 2, ValueLogFileSize: 64 << 20,
	BaseTableSize: 2 << 20, NumLevelZeroTables: 5, NumLevelZeroTablesStall: 15,
}

// BadgerDefaults is Badger's own defaults, for comparison in benchmarks.
func BadgerDefaults() Memory {
	o := badger.DefaultOptions("")
	if o.IndexCacheSize == 0 {
		o.IndexCacheSize = -1 // "none", as 0 means "the default" here
	}
	return Memory{MemTableSize: o.MemTableSize, NumMemtables: o.NumMemtables, BlockCacheSize: o.BlockCacheSize,
		IndexCacheSize: o.IndexCacheSize, NumCompactors: o.NumCompactors, ValueLogFileSize: o.ValueLogFileSize,
		BaseTableSize: o.BaseTableSize, NumLevelZeroTables: o.NumLevelZeroTables, NumLevelZeroTablesStall: o.NumLevelZeroTablesStall}
}

func (m Memory) withDefaults() Memory {
	d := DefaultMemory
	set := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	seti := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&m.MemTableSize, d.MemTableSize)
	seti(&m.NumMemtables, d.NumMemtables)
	set(&m.BlockCacheSize, d.BlockCacheSize)
	set(&m.IndexCacheSize, d.IndexCacheSize)
	seti(&m.NumCompactors, d.NumCompactors)
	set(&m.ValueLogFileSize, d.ValueLogFileSize)
	set(&m.BaseTableSize, d.BaseTableSize)
	seti(&m.NumLevelZeroTables, d.NumLevelZeroTables)
	seti(&m.NumLevelZeroTablesStall, d.NumLevelZeroTablesStall)
	return m
}

func (m Memory) apply(o badger.Options) badger.Options {
	if m.IndexCacheSize < 0 {
		m.IndexCacheSize = 0
	}
	return o.WithMemTableSize(m.MemTableSize).WithNumMemtables(m.NumMemtables).
		WithBlockCacheSize(m.BlockCacheSize).WithIndexCacheSize(m.IndexCacheSize).
		WithNumCompactors(m.NumCompactors).WithValueLogFileSize(m.ValueLogFileSize).
		WithBaseTableSize(m.BaseTableSize).WithNumLevelZeroTables(m.NumLevelZeroTables).
		WithNumLevelZeroTablesStall(m.NumLevelZeroTablesStall)
}
