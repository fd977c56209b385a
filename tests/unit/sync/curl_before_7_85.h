/*
 * curl_before_7_85.h - force-included (-include) into a second build of transport/http_client.c
 * and its test (unit.sync.http_client_curl768) so that the code paths for libcurl older than
 * 7.85 (JetPack 5: 7.68, JetPack 6: 7.81) are compiled and run on a machine with a newer
 * libcurl: LIBCURL_VERSION_NUM reads as 7.68.0 for the version checks after this point. The
 * options those paths use still exist in newer libcurl (deprecated there, hence the define).
 */
#ifndef FERRY_TEST_CURL_BEFORE_7_85_H
#define FERRY_TEST_CURL_BEFORE_7_85_H
#define CURL_DISABLE_DEPRECATION 1
#include <curl/curl.h>
#undef LIBCURL_VERSION_NUM
#define LIBCURL_VERSION_NUM 0x074400
#endif
