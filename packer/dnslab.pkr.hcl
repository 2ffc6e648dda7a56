# dnslab lab image: the lab layer on top of the mmdebstrap base (packer 1.6.6+, HCL2).
#
# Built here by `fab image` (lab/image.py passes every variable):
#   packer build -only=qemu.dnslab -var base_image=... packer/dnslab.pkr.hcl
# For users with internet, two more sources start from Debian's official images instead:
#   qemu.cloud       Debian's generic cloud image (var.debian_cloud_image), packages installed by apt
#   virtualbox-ovf.dnslab  an OVF/OVA exported from the Vagrant box's disk, for VirtualBox users

variable "base_image" {
  type        = string
  default     = ""
  description = "stage-2 qcow2 from packer/base/mkdisk.sh"
}
variable "kernel" {
  type    = string
  default = ""
}
variable "initrd" {
  type    = string
  default = ""
}
variable "output_dir" {
  type    = string
  default = "output-dnslab"
}
variable "ssh_private_key" {
  type        = string
  default     = ""
  description = "build key; its public half reaches the guest through qemu fw_cfg"
}
variable "authorized_keys" {
  type    = string
  default = ""
}
variable "serial_log" {
  type    = string
  default = "packer-serial.log"
}
variable "image_release" {
  type    = string
  default = "dev"
}
variable "accelerator" {
  type    = string
  default = "tcg"
}
variable "disk_size" {
  type        = string
  default     = "4096M"
  description = "virtual disk size: the base disk's own size (packer would otherwise grow it to 40G)"
}
variable "cpus" {
  type    = number
  default = 2
}
variable "memory" {
  type    = number
  default = 2048
}
variable "debian_cloud_image" {
  type        = string
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2"
  description = "Debian 12 official cloud image, for qemu.cloud (needs internet)"
}
variable "debian_cloud_checksum" {
  type        = string
  default     = "none"
  description = "qemu.cloud: set to file:<the image's SHA512SUMS URL> (packer would fetch it even offline)"
}
variable "pip_packages" {
  type        = string
  default     = "locust==2.47.0 dnspython==2.9.2"
  description = "qemu.cloud only: pip pins for /opt/dnslab/venv (lab/image.py PIP_PACKAGES)"
}
variable "cloud_seed_dir" {
  type        = string
  default     = "cloud-init"
  description = "qemu.cloud only: NoCloud seed (user-data with your SSH key, meta-data) served over HTTP"
}
variable "ovf_source" {
  type        = string
  default     = "dnslab-box.ova"
  description = "the Vagrant box's disk (box.img, which has the vagrant user) exported for VirtualBox (qemu-img convert -O vmdk, then an OVA)"
}

locals {
  # Restricted user networking: SSH on loopback only, no route out of the guest.
  netdev  = "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"
  cmdline = "root=LABEL=dnslab-root ro console=ttyS0,115200 net.ifnames=0 biosdevname=0"
}

source "qemu" "dnslab" {
  iso_url          = var.base_image
  iso_checksum     = "none"
  disk_image       = true
  disk_size        = var.disk_size
  use_backing_file = false
  format           = "qcow2"
  disk_compression = false  # compressing the ~1.2 GB disk costs more build time than it saves
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  machine_type     = "q35"
  accelerator      = var.accelerator
  cpus             = var.cpus
  memory           = var.memory
  headless         = true
  output_directory = var.output_dir
  vm_name          = "dnslab.qcow2"
  qemuargs = [
    ["-cpu", "max"],
    ["-netdev", local.netdev],
    ["-device", "virtio-net,netdev=user.0"],
    ["-fw_cfg", "name=opt/dnslab/authorized_keys,file=${var.authorized_keys}"],
    ["-kernel", var.kernel],
    ["-initrd", var.initrd],
    ["-append", local.cmdline],
    ["-serial", "file:${var.serial_log}"],
  ]
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key
  ssh_timeout          = "15m"
  shutdown_command     = "systemctl poweroff"
  shutdown_timeout     = "5m"
}

source "qemu" "cloud" {
  iso_url          = var.debian_cloud_image
  iso_checksum     = var.debian_cloud_checksum
  disk_image       = true
  format           = "qcow2"
  disk_size        = "4G"
  accelerator      = "kvm"
  headless         = true
  output_directory = "${var.output_dir}-cloud"
  vm_name          = "dnslab.qcow2"
  http_directory   = var.cloud_seed_dir
  qemuargs = [
    ["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"],
  ]
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key
  ssh_timeout          = "20m"
  shutdown_command     = "systemctl poweroff"
}

source "virtualbox-ovf" "dnslab" {
  source_path          = var.ovf_source
  headless             = true
  communicator         = "ssh"
  ssh_username         = "vagrant"
  ssh_private_key_file = var.ssh_private_key
  ssh_timeout          = "20m"
  shutdown_command     = "sudo systemctl poweroff"
  output_directory     = "${var.output_dir}-virtualbox"
}

build {
  sources = ["source.qemu.dnslab", "source.qemu.cloud", "source.virtualbox-ovf.dnslab"]

  # Only the cloud image lacks the base: install packer/base/packages.txt and run the same customize
  # hook on the running guest (it chroots into "/").
  provisioner "file" {
    only        = ["qemu.cloud"]
    source      = "${path.root}/base"
    destination = "/tmp/dnslab-base"
  }
  provisioner "shell" {
    only            = ["qemu.cloud"]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh {{ .Path }}"
    inline = [
      "apt-get update -q",
      "DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(sed 's/#.*//' /tmp/dnslab-base/packages.txt)",
      "DNSLAB_PIP_PACKAGES='${var.pip_packages}' sh /tmp/dnslab-base/customize.sh /",
    ]
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/lab-layer.sh"
    execute_command  = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh {{ .Path }}"
    environment_vars = ["DNSLAB_IMAGE_RELEASE=${var.image_release}"]
  }
}
