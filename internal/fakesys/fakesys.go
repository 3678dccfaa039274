package fakesys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Tree is a fake sysfs root (Sys) and device directory (Dev).
type Tree struct {
	Sys, Dev string
}

// New makes an empty tree under dir: dir/sys and dir/dev.
func New(dir string) (*Tree, error) {
	t := &Tree{Sys: filepath.Join(dir, "sys"), Dev: filepath.Join(dir, "dev")}
	for _, d := range []string{
		filepath.Join(t.Sys, "class", "tty"),
		filepath.Join(t.Sys, "devices", "virtual", "tty"),
		filepath.Join(t.Sys, "bus", "usb-serial", "drivers"),
		filepath.Join(t.Sys, "bus", "usb", "drivers"),
		filepath.Join(t.Sys, "bus", "platform", "drivers"),
		filepath.Join(t.Dev, "serial", "by-id"),
		filepath.Join(t.Dev, "serial", "by-path"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// USB describes a USB device.
type USB struct {
	Port         string // the USB port path, e.g. "1-2"
	VID, PID     string // e.g. "0403", "6001"
	Serial       string // empty: the device has no serial number
	Manufacturer string
	Product      string
}

// AddUART adds a built-in serial-core port called name (ttyS0) with the
// given UART type (4 is a 16550A, 0 none) and its device node pointing at
// node ("" makes a placeholder file).
func (t *Tree) AddUART(name string, uartType int, node string) error {
	dev := filepath.Join(t.Sys, "devices", "platform", "serial8250")
	class := filepath.Join(dev, "tty", name)
	return t.add(name, class, dev, "platform", "serial8250", map[string]string{
		"type": fmt.Sprint(uartType), "uartclk": "1843200", "port": "0x3F8", "irq": "4",
	}, node)
}

// AddUSBSerial adds a USB serial adapter (ftdi_sio, as ttyUSB ports are)
// whose tty is called name, with a /dev/serial/by-id and by-path link.
func (t *Tree) AddUSBSerial(name string, u USB, node string) error {
	ifc, err := t.usbDevice(u, "ftdi_sio")
	if err != nil {
		return err
	}
	port := filepath.Join(ifc, name)
	if err := t.device(port, "usb-serial", "ftdi_sio"); err != nil {
		return err
	}
	if err := t.add(name, filepath.Join(port, "tty", name), port, "", "", nil, node); err != nil {
		return err
	}
	return t.stableLinks(name, u, "port0")
}

// AddACM adds a USB CDC-ACM device whose tty is called name (ttyACM0).
func (t *Tree) AddACM(name string, u USB, node string) error {
	ifc, err := t.usbDevice(u, "cdc_acm")
	if err != nil {
		return err
	}
	if err := t.add(name, filepath.Join(ifc, "tty", name), ifc, "", "", nil, node); err != nil {
		return err
	}
	return t.stableLinks(name, u, "")
}

// AddVirtual adds a tty with no device behind it, like a virtual console.
func (t *Tree) AddVirtual(name string) error {
	class := filepath.Join(t.Sys, "devices", "virtual", "tty", name)
	if err := os.MkdirAll(class, 0o755); err != nil {
		return err
	}
	if err := write(filepath.Join(class, "uevent"), "MAJOR=4\nMINOR=0\nDEVNAME="+name+"\n"); err != nil {
		return err
	}
	return os.Symlink(class, filepath.Join(t.Sys, "class", "tty", name))
}

// Remove takes the tty called name away, as unplugging its adapter does:
// its sysfs entries, device node and by-id and by-path links.
func (t *Tree) Remove(name string) error {
	class := filepath.Join(t.Sys, "class", "tty", name)
	dev, err := filepath.EvalSymlinks(filepath.Join(class, "device"))
	if err != nil {
		return fmt.Errorf("fakesys: no tty %s: %w", name, err)
	}
	if err := os.Remove(class); err != nil {
		return err
	}
	node := filepath.Join(t.Dev, name)
	for _, kind := range []string{"by-id", "by-path"} {
		dir := filepath.Join(t.Dev, "serial", kind)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			l := filepath.Join(dir, e.Name())
			if target, err := os.Readlink(l); err == nil && filepath.Join(dir, target) == node {
				_ = os.Remove(l)
			}
		}
	}
	if err := os.Remove(node); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The USB device (for ttyUSB, the interface's parent; for ttyACM, the
	// interface's) goes with it.
	for d := dev; strings.HasPrefix(d, t.Sys); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "idVendor")); err == nil {
			return os.RemoveAll(d)
		}
	}
	return os.RemoveAll(dev)
}

// usbDevice makes the USB device and its interface 0 bound to driver and
// returns the interface's directory.
func (t *Tree) usbDevice(u USB, driver string) (string, error) {
	if u.Port == "" {
		return "", errors.New("fakesys: USB.Port is empty")
	}
	dev := filepath.Join(t.Sys, "devices", "pci0000:00", "0000:00:14.0", "usb1", u.Port)
	attrs := map[string]string{"idVendor": u.VID, "idProduct": u.PID, "manufacturer": u.Manufacturer, "product": u.Product, "serial": u.Serial}
	if err := t.device(dev, "usb", "usb"); err != nil {
		return "", err
	}
	for k, v := range attrs {
		if v == "" {
			continue
		}
		if err := write(filepath.Join(dev, k), v+"\n"); err != nil {
			return "", err
		}
	}
	ifc := filepath.Join(dev, u.Port+":1.0")
	if err := t.device(ifc, "usb", driver); err != nil {
		return "", err
	}
	return ifc, write(filepath.Join(ifc, "bInterfaceNumber"), "00\n")
}

// device makes a device directory with subsystem and driver links.
func (t *Tree) device(dir, subsystem, driver string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	drv := filepath.Join(t.Sys, "bus", subsystem, "drivers", driver)
	if err := os.MkdirAll(drv, 0o755); err != nil {
		return err
	}
	for _, l := range []struct{ name, target string }{{"subsystem", filepath.Join(t.Sys, "bus", subsystem)}, {"driver", drv}} {
		p := filepath.Join(dir, l.name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Symlink(l.target, p); err != nil {
			return err
		}
	}
	return nil
}

// add makes the tty class directory class of the device dev (made with
// subsystem and driver if they are given), its /sys/class/tty link and its
// device node.
func (t *Tree) add(name, class, dev, subsystem, driver string, attrs map[string]string, node string) error {
	if subsystem != "" {
		if err := t.device(dev, subsystem, driver); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(class, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(class, dev)
	if err != nil {
		return err
	}
	if err := os.Symlink(rel, filepath.Join(class, "device")); err != nil {
		return err
	}
	if err := write(filepath.Join(class, "uevent"), "MAJOR=188\nMINOR=0\nDEVNAME="+name+"\n"); err != nil {
		return err
	}
	for k, v := range attrs {
		if err := write(filepath.Join(class, k), v+"\n"); err != nil {
			return err
		}
	}
	if err := os.Symlink(class, filepath.Join(t.Sys, "class", "tty", name)); err != nil {
		return err
	}
	nodePath := filepath.Join(t.Dev, name)
	if node == "" {
		return write(nodePath, "")
	}
	return os.Symlink(node, nodePath)
}

// stableLinks makes the by-id and by-path links of a USB tty as udev
// names them.
func (t *Tree) stableLinks(name string, u USB, port string) error {
	id := "usb-" + strings.ReplaceAll(u.Manufacturer+"_"+u.Product, " ", "_")
	if u.Serial != "" {
		id += "_" + u.Serial
	}
	id += "-if00"
	if port != "" {
		id += "-" + port
	}
	byPath := "pci-0000:00:14.0-usb-0:" + strings.TrimPrefix(u.Port, "1-") + ":1.0"
	if port != "" {
		byPath += "-" + port
	}
	for _, l := range []string{filepath.Join(t.Dev, "serial", "by-id", id), filepath.Join(t.Dev, "serial", "by-path", byPath)} {
		if _, err := os.Lstat(l); err == nil {
			continue // two adapters alike without serial numbers: udev links one
		}
		if err := os.Symlink("../../"+name, l); err != nil {
			return err
		}
	}
	return nil
}

func write(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// ByID returns the /dev/serial/by-id link of the tty called name, or "".
func (t *Tree) ByID(name string) string {
	dir := filepath.Join(t.Dev, "serial", "by-id")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == "../../"+name {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}
