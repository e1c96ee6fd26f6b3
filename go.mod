module github.com/silt-dev/silt

go 1.26
