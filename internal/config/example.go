package config

import _ "embed"

// Example is a documented example configuration (silt config example).
//
//go:embed example.yaml
var Example string
