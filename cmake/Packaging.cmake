# The Debian package: `cmake --build build --target package` (or tools/package.sh) writes
# build/eoe_<version>_<arch>.deb with eoe and eoe-trace in /usr/bin, the shipped configs in
# /usr/share/eoe/configs, the README in /usr/share/doc/eoe, and the systemd unit template
# eoe-node@.service; dpkg-shlibdeps finds the libraries it depends on (libcaf-*, Boost,
# OpenSSL, toml++, ...). The postinst makes the `eoe` system user the unit runs as.
install(TARGETS eoe eoe-trace RUNTIME DESTINATION bin)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/configs/" DESTINATION share/eoe/configs
        PATTERN "certs" EXCLUDE)
install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION share/doc/eoe)
install(FILES "${PROJECT_SOURCE_DIR}/packaging/eoe-node@.service" DESTINATION lib/systemd/system)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME eoe)
set(CPACK_PACKAGE_VENDOR "eoe")
set(CPACK_PACKAGE_CONTACT "eoe developers <eoe@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Ensemble- and Mesh-of-Experts networks on actors")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "etcd-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/packaging/postinst")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
