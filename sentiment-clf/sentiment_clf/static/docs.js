// Swagger UI for /docs, reading the service's own OpenAPI document.
window.onload = function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
};
