//go:build !amd64 || purego

package stream

func md5x8(dig *[4][8]uint32, m *[16][8]uint32) { panic("md5x8 without AVX2") }

const haveMD5x8 = false
