package recorder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// CheckOutput refuses, before any probe attaches, a capture path that
// Create would refuse: a symbolic link, anything but a regular file (a
// FIFO, a device, a socket, a directory), an existing file unless
// overwrite is set, and then one that another user owns or that has other
// hard links; and a directory that does not take a new file.
func CheckOutput(path string, overwrite bool) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f, err := os.CreateTemp(filepath.Dir(path), ".porttrace-check-*")
		if err != nil {
			return fmt.Errorf("-o %s: cannot create a file there: %w", path, unwrapPath(err))
		}
		f.Close()
		os.Remove(f.Name())
		return nil
	case err != nil:
		return fmt.Errorf("-o %s: %w", path, unwrapPath(err))
	}
	if err := replaceable(path, st, overwrite); err != nil {
		return err
	}
	return unix.Access(path, unix.W_OK)
}

// replaceable says why an existing file at path must not be written, or
// nil if overwrite allows it.
func replaceable(path string, st fs.FileInfo, overwrite bool) error {
	m := st.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return fmt.Errorf("-o %s is a symbolic link: porttrace never writes through a link; name the file itself", path)
	case m.IsDir():
		return fmt.Errorf("-o %s is a directory: name a file in it", path)
	case !m.IsRegular():
		return fmt.Errorf("-o %s is not a regular file (%s): a capture must be a file it can seek and sync", path, kind(m))
	case !overwrite:
		return fmt.Errorf("-o %s exists: porttrace writes only a file it creates; name a new one, or give --overwrite to replace your own", path)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("-o %s belongs to uid %d, not to you (uid %d): porttrace does not write into another user's file, even with --overwrite", path, sys.Uid, os.Geteuid())
	}
	if sys.Nlink > 1 {
		return fmt.Errorf("-o %s has %d hard links: replacing it would write through the other names too", path, sys.Nlink)
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// Create makes the capture file, mode 0600 (a capture names every process
// and connection on the node): never through a symbolic link
// (O_NOFOLLOW), and never into an existing file (O_EXCL) unless overwrite
// is set, and then only into the caller's own regular file with one link,
// as checked on the open descriptor, which is truncated and made 0600.
func Create(path string, overwrite bool) (*os.File, error) {
	const flags = os.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	f, err := os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil || !overwrite || !errors.Is(err, fs.ErrExist) {
		if err != nil {
			err = createError(path, err)
		}
		return f, err
	}
	// O_NONBLOCK: opening a FIFO for writing would wait for a reader.
	f, err = os.OpenFile(path, flags|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, createError(path, err)
	}
	st, err := f.Stat()
	if err == nil {
		err = replaceable(path, st, true)
	}
	if err == nil {
		err = errors.Join(f.Truncate(0), f.Chmod(0o600))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func createError(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("-o %s is a symbolic link: porttrace never writes through a link; name the file itself", path)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("-o %s exists: porttrace writes only a file it creates; name a new one, or give --overwrite to replace your own", path)
	}
	return fmt.Errorf("create capture: %w", err)
}

// unwrapPath drops the path from an error, keeping its cause.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
