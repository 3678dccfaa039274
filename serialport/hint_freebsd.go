package serialport

const permissionHint = `add your user to the "dialer" group: pw groupmod dialer -m $USER, then log in again`
