package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/control"
	"github.com/sockmux/sockmux/serialport"
)

// portsCommand is "sockmux ports": the serial ports of this machine.
func portsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ports",
		Usage: "list the serial ports of this machine, to find the one to pass to --comm",
		Description: `Lists serial ports with their driver, description (USB manufacturer and
product, or a built-in port's UART type), the running sockmux links that use
them (found through the control sockets in the user's directory and in
/run/sockmux), and what to pass to --comm: a USB adapter's identity
(usb:VID:PID:SERIAL), which sockmux follows to whatever name the adapter gets
when it is plugged in again, or the device path. --json adds the USB IDs,
serial number and, on Linux, the /dev/serial/by-id and by-path links.

Listing opens no port: on Linux it reads sysfs, so ports in use keep their
settings and boards behind them are not reset.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array instead of a table"},
		},
		Action: func(c *cli.Context) error {
			ports, err := listPorts(serialport.System{}, controlDirs())
			if err != nil {
				return err
			}
			w := c.App.Writer
			if w == nil {
				w = os.Stdout
			}
			if c.Bool("json") {
				return printPortsJSON(w, ports)
			}
			return printPortsTable(w, ports)
		},
	}
}

// portRow is one port as sockmux ports shows it.
type portRow struct {
	serialport.PortInfo
	// Comm is what to pass to --comm for this port.
	Comm string `json:"comm"`
	// HeldBy are the running links that have the port open.
	HeldBy []portHolder `json:"held_by,omitempty"`
}

// portHolder is a running link using a port.
type portHolder struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// controlDirs are where sockmux ports looks for running links: the user's
// control socket directory and, on Linux, /run/sockmux, where the systemd
// unit in dist/ puts its socket.
func controlDirs() []string {
	dirs := []string{control.SocketDir()}
	if runtime.GOOS == "linux" && dirs[0] != runDir {
		dirs = append(dirs, runDir)
	}
	return dirs
}

const runDir = "/run/sockmux"

// listPorts lists the ports of sys and the links, answering on the control
// sockets in sockDirs, that use them.
func listPorts(sys serialport.System, sockDirs []string) ([]portRow, error) {
	ports, err := sys.List()
	if err != nil {
		return nil, err
	}
	var links []control.Status
	for _, d := range sockDirs {
		links = append(links, control.Running(d, time.Second)...)
	}
	rows := make([]portRow, len(ports))
	for i, p := range ports {
		rows[i] = portRow{PortInfo: p, Comm: commFor(ports, p)}
		for _, l := range links {
			if l.Device != "" && sameDevice(l.Device, p.Name) {
				rows[i].HeldBy = append(rows[i].HeldBy, portHolder{Name: l.Name, PID: l.PID})
			}
		}
	}
	return rows, nil
}

// commFor is what to pass to --comm for p: its identity when that names it
// alone, else its /dev/serial/by-id link, else its path.
func commFor(ports []serialport.PortInfo, p serialport.PortInfo) string {
	if id := p.Identity(); !id.IsZero() {
		if found, err := serialport.Find(ports, id); err == nil && found.Name == p.Name {
			return id.String()
		}
	}
	if p.ByID != "" {
		return p.ByID
	}
	return p.Name
}

// sameDevice reports whether the paths name the same device node, without
// opening either.
func sameDevice(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(fa, fb)
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

func printPortsJSON(w io.Writer, rows []portRow) error {
	if rows == nil {
		rows = []portRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

func printPortsTable(w io.Writer, rows []portRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no serial ports found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tDRIVER\tDESCRIPTION\tIN USE BY\t--comm")
	for _, r := range rows {
		held := make([]string, len(r.HeldBy))
		for i, h := range r.HeldBy {
			held[i] = fmt.Sprintf("link %q (pid %d)", h.Name, h.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, portField(r.Driver), portField(r.Description()), portField(strings.Join(held, ", ")), r.Comm)
	}
	return tw.Flush()
}

// portField stands in for an unknown value in the ports table.
func portField(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
