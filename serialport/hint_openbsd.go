package serialport

const permissionHint = `add your user to the "dialer" group: usermod -G dialer $USER, then log in again`
