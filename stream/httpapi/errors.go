package httpapi

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
)

// errorBody is every HTTP error of the API: {"error":{"code":…,"message":…}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError answers c with status and the API's error body
// {"error":{"code":code,"message":message}}. Every JSON error of the
// server is written by it, the auth guard's 401 and 429 included, so that
// programs parse one shape (docs/protocol.md).
func WriteError(c *fiber.Ctx, status int, code, message string) error {
	return c.Status(status).JSON(errorBody{errorDetail{code, message}})
}

// ErrorHandler is a fiber.ErrorHandler answering every error in the API's
// JSON form {"error":{"code":…,"message":…}}: a *fiber.Error keeps its
// status (code derived from it: not_found, method_not_allowed,
// payload_too_large, request_timeout, bad_request…), anything else is a 500
// internal error whose detail is not shown to the client.
func ErrorHandler(c *fiber.Ctx, err error) error {
	status, msg := fiber.StatusInternalServerError, "internal error"
	var fe *fiber.Error
	if errors.As(err, &fe) {
		status, msg = fe.Code, fe.Message
	}
	return WriteError(c, status, statusCode(status), msg)
}

// statusCode names an HTTP status as an error code: "Not Found" → not_found.
func statusCode(status int) string {
	switch status {
	case fiber.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case fiber.StatusInternalServerError:
		return "internal"
	}
	text := fiber.ErrInternalServerError.Message
	if t := utils.StatusMessage(status); t != "" {
		text = t
	}
	return strings.ReplaceAll(strings.ToLower(text), " ", "_")
}
