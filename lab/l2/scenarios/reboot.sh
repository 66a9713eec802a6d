LAB_ACTION=reboot
