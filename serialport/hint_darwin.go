package serialport

const permissionHint = "check the device's owner and mode with ls -l"
