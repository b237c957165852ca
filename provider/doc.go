// Package provider is the DecisionTelecom Viber + SMS HTTP API client: wire types,
// status enums, validation rules, typed errors and the parsing of what the provider
// sends to us (status callbacks and two-way replies).
//
// It never retries and never logs (the queue is the retry loop, see worker). It
// imports only the standard library.
//
// Files: message.go and validate.go (Message, Validate, WireJSON, SMSLength), id.go
// (MessageID), status.go (statuses, Outcome, Combine), client.go (Client and its one
// request funnel), response.go (response decoding and error mapping), errors.go (the
// typed errors and MaybeSent), callback.go (status callbacks, two-way replies, their
// http.Handler adapters, MaskPhone).
//
// The access key never appears in an error, in any fmt rendering of a Client or an
// error, or in vendor text quoted by an error: every spelling of it (as given, Base64
// with and without the trailing colon) is replaced by "[REDACTED]".
//
// # Vendor notes
//
// The vendor's documentation is one page ("VIBER + SMS API", Russian edition) plus
// the official SDKs, which are code rather than specification. The rules this package
// applies, and where they come from; comments elsewhere cite these notes by name
// ("vendor notes: errors"). The README section "Where the vendor documentation is
// silent" lists the decisions taken where the page says nothing, each with its line.
// The simulator (provider/dtsim) reads the same page independently, and
// conformance_test.go checks both readings rule by rule.
//
//   - Endpoints: POST {base}/send-viber (the page's curl_init URL,
//     https://web.it-decision.com/v1/api/send-viber); POST {base}/receive-viber for the
//     status ("Получить Вайбер сообщение": the page gives no URL; every SDK uses this one),
//     body {"message_id":N} for messages of the last 5 days.
//   - Auth: "Базовая авторизация", the PHP sample's CURLOPT_USERPWD "$userHashKey".
//     The header is Basic base64(key) as every SDK sends it (libcurl sends base64(key:),
//     which decodes to the same user); WithEncodedKey sends a pre-encoded key as is.
//   - Timeout: the page's sample sets CURLOPT_TIMEOUT 30; DefaultTimeout is 30 s (its doc
//     says why a shorter one costs "unknown" sends).
//   - Fields and limits ("Параметры"): source_addr ≤ 20 chars; destination_addr ≤ 20
//     chars on the page, held here to 7..15 digits (E.164, MinDestinationLen);
//     message_type 106, 108, 206, 208 (the 225 of one English example is listed nowhere
//     else and refused); text ≤ 1000; text_sms "<= 70 chars for UCS-2 (16-bit) and <= 160
//     chars for Latin", read as one SMS segment (GSM-7 with extension characters counting
//     2, else UTF-16 units) and only for transactional messages ("только для
//     транзакционных сообщений"), with message_type 106; image a jpg/jpeg or png: the type
//     is the file's, so a URL is refused only when its path names another type;
//     button_caption ≤ 30; button_action and callback_url absolute http(s) URLs;
//     source_type 1 promotional, 2 transactional ("текстовое сообщение": text only, so
//     108/208 need 1).
//   - TTL: validity_period in seconds, 40..21600 ("мин. TTL 40 секунд макс. TTL 21600
//     секунд"), and exactly 40 with text_sms ("transactional message + SMS - TTL всего 40
//     секунд", SMSValidityPeriod). Absent: the provider tries for a day.
//   - Only the fields of the message type go on the wire (106/206: text and text_sms;
//     108/208: text, image, button), never null or "", destination_addr as a string of
//     digits: the vendor's English example, which sends image and button with 106 and a
//     numeric destination_addr, contradicts the page's parameter list.
//   - Send answer: message_id ("Идентификатор отправленного сообщения"), a number or a
//     numeric string (one SDK's tests use the string form).
//   - Errors ("Ошибки"): the page's body is {"message","code","status"}: code 0 / status
//     429 rate limit, 1 / 400 bad or empty parameter, 2 / 500 server, 3 / 402 empty
//     balance. The SDKs add "name" ("Invalid Parameter: <field>"). An error is recognised
//     by the page's fields (integer code and status, a string message or name, no
//     message_id) on any HTTP status, 200 included, and on both endpoints; 401/403 are
//     an unusable key whatever the body.
//   - Viber statuses ("Статусы сообщений Вайбер"): 1 delivered, 2 error, 3 rejected, 4
//     undelivered (final); 5 pending, 20 unknown (not final); the SDKs add 0 sent. Any
//     other code is pending.
//   - SMS statuses ("Статусы SMS сообщений"): the page lists 5 undeliverable and 3
//     expired; "delivered" is 2 in every SDK; 0 and 6 in two. Any other code is pending
//     and never final: it may mean delivered (SMSStatus.Listed).
//   - Status callbacks: the page names callback_url ("для обратного вызова статуса
//     сообщения") but not its payload: parsed tolerantly, confirmed by polling.
//   - Two-way replies ("Получить сообщение от пользователя для двусторонних
//     сообщений"): message_token, phone_number, time, message: text, tracking_data:
//     tracking_id, without nesting or types. Every plausible shape is kept (ParseReply);
//     parts that cannot be read are returned with the reason, never dropped.
//   - Retries: the provider has no idempotency key; the client never retries, and
//     MaybeSent tells an ambiguous failure (the request was written) from one where
//     nothing was sent.
package provider
