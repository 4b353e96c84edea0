# The Debian package: `cmake --build build --target package` (or tools/package.sh) writes
# build/eoe_<version>_<arch>.deb with eoe and eoe-trace in /usr/bin, the shipped configs in
# /usr/share/eoe/configs, the README in /usr/share/doc/eoe, and the systemd unit template
# eoe-node@.service; dpkg-shlibdeps finds the libraries it depends on (libcaf-*, Boost,
# OpenSSL, toml++, ...). The postinst makes the `eoe` system user the unit runs as.
install(TARGETS eoe eoe-trace RUNTIME DESTINATION bin)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/configs/" DESTINATION share/eoe/configs
        PATTERN "certs" EXCLUDE)
set(EOE_PACKAGE_MAINTAINER "eoe developers <eoe@eoe.example.org>" CACHE STRING
    "The Debian package's Maintainer")
# Debian wants a changelog and a copyright file beside the README.
string(TIMESTAMP eoe_package_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE "${CMAKE_BINARY_DIR}/packaging/changelog"
     "eoe (${PROJECT_VERSION}) unstable; urgency=medium\n\n  * Built from the eoe source tree.\n\n"
     " -- ${EOE_PACKAGE_MAINTAINER}  ${eoe_package_date}\n")
execute_process(COMMAND gzip -n -9 -f "${CMAKE_BINARY_DIR}/packaging/changelog")
install(FILES "${PROJECT_SOURCE_DIR}/README.md" "${PROJECT_SOURCE_DIR}/packaging/copyright"
              "${CMAKE_BINARY_DIR}/packaging/changelog.gz"
        DESTINATION share/doc/eoe)
install(FILES "${PROJECT_SOURCE_DIR}/packaging/eoe-node@.service" DESTINATION lib/systemd/system)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME eoe)
set(CPACK_PACKAGE_VENDOR "eoe")
set(CPACK_PACKAGE_CONTACT "${EOE_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Ensemble- and Mesh-of-Experts networks on actors")
set(CPACK_PACKAGE_DESCRIPTION "A runtime for Ensemble-of-Experts and Mesh-of-Experts networks:
every expert and every context shard is an actor of the C++ Actor
Framework on a networked cluster. Experts score their own activation,
with no router; a composer merges the shards' partial attention.
Includes the eoe command line, the eoe-trace tool, the shipped model
and cluster configs, and the systemd unit eoe-node@.service.")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "etcd-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/packaging/postinst")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
