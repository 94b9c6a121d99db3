// Package atomicfile writes files so that a reader (or the next start after a crash) sees the old
// content or the new one, never a torn file: through a synced temporary file and a rename in the
// same file system.
package atomicfile

import "os"

// Write writes data to dest through a synced temporary file created in tmpDir, which must be on
// dest's file system so that the rename is atomic.
func Write(tmpDir, dest string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "write-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails once renamed: nothing left to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dest)
}
