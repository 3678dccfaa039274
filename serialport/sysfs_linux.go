package serialport

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func (s System) sysRoot() string {
	if s.SysRoot == "" {
		return "/sys"
	}
	return s.SysRoot
}

// uartTypes names the UART types of Linux's serial core (the "type"
// attribute of a serial-core tty: PORT_* in linux/serial_core.h) that
// built-in and plug-in-card ports commonly have.
var uartTypes = map[int]string{
	1: "8250", 2: "16450", 3: "16550", 4: "16550A", 5: "Cirrus", 6: "16650",
	7: "16650V2", 8: "16750", 9: "Startech", 10: "16C950", 11: "16654",
	12: "16850", 13: "RSA", 14: "NS16550A", 15: "XScale", 32: "AMBA PL010",
	33: "AMBA PL011",
}

// listPorts reads /sys/class/tty: every tty with a device behind it
// (virtual consoles and pseudo-terminals have none), except serial-core
// ports whose UART type is 0 ("unknown": a name with no UART behind it).
// It opens no device node.
func (s System) listPorts() ([]PortInfo, error) {
	dir := filepath.Join(s.sysRoot(), "class", "tty")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing serial ports: %w", err)
	}
	var ports []PortInfo
	for _, e := range entries {
		if p, ok := s.ttyInfo(e.Name()); ok {
			ports = append(ports, p)
		}
	}
	byID, byPath := s.stableLinks("by-id"), s.stableLinks("by-path")
	for i := range ports {
		keys := []string{ports[i].Name}
		if real, err := filepath.EvalSymlinks(ports[i].Name); err == nil {
			keys = append(keys, real)
		}
		for _, k := range keys {
			if ports[i].ByID == "" {
				ports[i].ByID = byID[k]
			}
			if ports[i].ByPath == "" {
				ports[i].ByPath = byPath[k]
			}
		}
	}
	return ports, nil
}

// ttyInfo describes the tty called name from sysfs; ok is false when it
// is not a serial port (no device behind it, or a UART type of 0).
func (s System) ttyInfo(name string) (p PortInfo, ok bool) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return PortInfo{}, false
	}
	class := filepath.Join(s.sysRoot(), "class", "tty", name)
	dev, err := filepath.EvalSymlinks(filepath.Join(class, "device"))
	if err != nil {
		return PortInfo{}, false
	}
	if t, err := readAttr(filepath.Join(class, "type")); err == nil {
		n, err := strconv.Atoi(t)
		if err != nil || n == 0 {
			return PortInfo{}, false
		}
		if p.UART = uartTypes[n]; p.UART == "" {
			p.UART = "type " + t
		}
	}
	devName := name
	if ue, err := os.ReadFile(filepath.Join(class, "uevent")); err == nil {
		for _, line := range strings.Split(string(ue), "\n") {
			if v, ok := strings.CutPrefix(line, "DEVNAME="); ok && v != "" && !strings.Contains(v, "..") {
				devName = v
			}
		}
	}
	p.Name = filepath.Join(s.devRoot(), devName)
	p.Driver = linkBase(filepath.Join(dev, "driver"))
	s.usbInfo(dev, &p)
	return p, true
}

// usbInfo fills in the USB details from the USB device among dev and its
// ancestors in sysfs (the one with idVendor and idProduct), if any.
func (s System) usbInfo(dev string, p *PortInfo) {
	root, err := filepath.EvalSymlinks(s.sysRoot())
	if err != nil {
		return
	}
	for d := dev; strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		vid, err1 := readAttr(filepath.Join(d, "idVendor"))
		pid, err2 := readAttr(filepath.Join(d, "idProduct"))
		if err1 != nil || err2 != nil {
			continue
		}
		p.IsUSB = true
		p.VID, p.PID = strings.ToLower(vid), strings.ToLower(pid)
		p.SerialNumber, _ = readAttr(filepath.Join(d, "serial"))
		p.Manufacturer, _ = readAttr(filepath.Join(d, "manufacturer"))
		p.Product, _ = readAttr(filepath.Join(d, "product"))
		return
	}
}

// stableLinks maps device paths to the links under /dev/serial/kind
// (by-id, by-path) that name them: both the path the link names and the
// path all links resolved.
func (s System) stableLinks(kind string) map[string]string {
	dir := filepath.Join(s.devRoot(), "serial", kind)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		link := filepath.Join(dir, e.Name())
		if t, err := os.Readlink(link); err == nil {
			if !filepath.IsAbs(t) {
				t = filepath.Join(dir, t)
			}
			m[filepath.Clean(t)] = link
		}
		if real, err := filepath.EvalSymlinks(link); err == nil {
			if _, dup := m[real]; !dup {
				m[real] = link
			}
		}
	}
	return m
}

// lookupPath describes the port that path names, following symbolic links
// (such as /dev/serial/by-id/...) one at a time until one reaches a device
// node directly in the device directory that sysfs knows as a tty. It
// reads sysfs for that one tty only, and nothing for a path that never
// gets there (a pseudo-terminal at /dev/pts/N). ok is false when the port
// is not known.
func (s System) lookupPath(path string) (PortInfo, bool) {
	devRoot := filepath.Clean(s.devRoot())
	p := filepath.Clean(path)
	for range 16 {
		if filepath.Dir(p) == devRoot {
			if info, ok := s.ttyInfo(filepath.Base(p)); ok {
				return info, true
			}
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return PortInfo{}, false
		}
		t, err := os.Readlink(p)
		if err != nil {
			return PortInfo{}, false
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		p = filepath.Clean(t)
	}
	return PortInfo{}, false
}

// readAttr reads a one-line sysfs attribute without its newline.
func readAttr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// linkBase is the last element of the symbolic link's target, e.g. the
// driver's name from a device's "driver" link; empty if it is no link.
func linkBase(link string) string {
	t, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}
