################################################################################
#
# gatehouse
#
################################################################################

# Built from this checkout: the external tree sits in <repo>/buildroot.
GATEHOUSE_VERSION = 0.1.0
GATEHOUSE_SITE = $(BR2_EXTERNAL_GATEHOUSE_PATH)/..
GATEHOUSE_SITE_METHOD = local
GATEHOUSE_LICENSE = Apache-2.0
# The daemon is the `appliance` member of the workspace.
GATEHOUSE_SUBDIR = appliance
# Build outputs and the image stay out of the copy of the source.
GATEHOUSE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude target --exclude image/out --exclude .git

# Buildroot vendors crates only for downloaded packages; a local one is
# vendored here (this is the step that needs the network), so the build
# itself runs offline and --locked like any cargo package.
define GATEHOUSE_VENDOR_CRATES
	cd $(@D) && \
		$(PKG_COMMON_CARGO_ENV) $(HOST_DIR)/bin/cargo vendor --locked \
			--manifest-path Cargo.toml VENDOR > $(@D)/vendor-config.toml && \
		mkdir -p $(@D)/.cargo && \
		mv $(@D)/vendor-config.toml $(@D)/.cargo/config.toml
endef
GATEHOUSE_PRE_BUILD_HOOKS += GATEHOUSE_VENDOR_CRATES

# The workspace's target directory holds the binary; `cargo install`
# would build it a second time.
define GATEHOUSE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/gatehouse \
		$(TARGET_DIR)/usr/bin/gatehouse
endef

$(eval $(cargo-package))
