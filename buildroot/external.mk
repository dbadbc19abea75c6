include $(sort $(wildcard $(BR2_EXTERNAL_GATEHOUSE_PATH)/package/*/*.mk))
