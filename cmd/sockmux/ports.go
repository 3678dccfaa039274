package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/serialport"
)

// portsCommand is "sockmux ports": the serial ports of this machine.
func portsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ports",
		Usage: "list the serial ports of this machine, to find the one to pass to --comm",
		Description: `Lists serial ports with their USB vendor and product IDs, serial number and
description where known, and on Linux the /dev/serial/by-id path that names
the same adapter across reboots and replugging.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array instead of a table"},
		},
		Action: func(c *cli.Context) error {
			ports, err := serialport.List()
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

func printPortsJSON(w io.Writer, ports []serialport.PortInfo) error {
	if ports == nil {
		ports = []serialport.PortInfo{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ports)
}

func printPortsTable(w io.Writer, ports []serialport.PortInfo) error {
	if len(ports) == 0 {
		_, err := fmt.Fprintln(w, "no serial ports found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tUSB ID\tSERIAL\tDESCRIPTION\tSTABLE PATH")
	for _, p := range ports {
		usb := "-"
		switch {
		case p.VID != "" || p.PID != "":
			usb = p.VID + ":" + p.PID
		case p.IsUSB:
			usb = "usb"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, usb, portField(p.SerialNumber), portField(p.Product), portField(p.ByID))
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
