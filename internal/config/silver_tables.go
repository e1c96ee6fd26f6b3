package config

import (
	"fmt"
	"strings"
)

// SilverTableConfig is per-table Silver configuration (silver.tables.<schema.table>).
type SilverTableConfig struct {
	// PartitionBy: business-key partition columns of the Silver table (e.g.
	// [plant]); applied when the Silver table is created.
	PartitionBy []string `yaml:"partition_by"`
	// Derived columns computed from the row.
	Derived []DerivedConfig `yaml:"derived"`
	// Lookups join columns from a CSV file or another Silver table.
	Lookups []LookupConfig `yaml:"lookups"`
}

// DerivedConfig is one derived column: function(args...).
type DerivedConfig struct {
	Name     string   `yaml:"name"`
	Function string   `yaml:"function"` // date, hour, year, month, lower, upper, concat
	Args     []string `yaml:"args"`     // column names, or 'literals' in single quotes
}

// LookupConfig joins static columns.
type LookupConfig struct {
	File    string   `yaml:"file"`  // CSV with a header row
	Table   string   `yaml:"table"` // or a source table whose Silver table is the dimension, schema.table
	On      string   `yaml:"on"`
	Columns []string `yaml:"columns"`
}

var derivedFunctions = map[string]bool{"date": true, "hour": true, "year": true, "month": true, "lower": true, "upper": true, "concat": true}

func (c *SilverConfig) validateTables(add func(string, ...any)) {
	for name, t := range c.Tables {
		where := "silver.tables." + name
		if _, err := ParseTable(name); err != nil {
			add("%s: %v", where, err)
		}
		for i, d := range t.Derived {
			if strings.TrimSpace(d.Name) == "" {
				add("%s.derived[%d].name is empty", where, i)
			}
			if !derivedFunctions[d.Function] {
				add("%s.derived[%d].function %q is not one of date, hour, year, month, lower, upper, concat", where, i, d.Function)
			}
			if len(d.Args) == 0 {
				add("%s.derived[%d].args is empty: name the input column(s)", where, i)
			}
		}
		for i, l := range t.Lookups {
			if (l.File == "") == (l.Table == "") {
				add("%s.lookups[%d]: give exactly one of file or table", where, i)
			}
			if l.Table != "" {
				if _, err := ParseTable(l.Table); err != nil {
					add("%s.lookups[%d].table: %v", where, i, err)
				}
			}
			if l.On == "" {
				add("%s.lookups[%d].on is empty: name the join column", where, i)
			}
			if len(l.Columns) == 0 {
				add("%s.lookups[%d].columns is empty", where, i)
			}
		}
	}
}

// LookupTablePath is the lake key of a lookup's Silver table.
func (l LookupConfig) LookupTablePath() (string, error) {
	id, err := ParseTable(l.Table)
	if err != nil {
		return "", fmt.Errorf("lookup table: %w", err)
	}
	return "silver/" + id.Schema + "/" + id.Name, nil
}
