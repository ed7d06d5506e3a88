"""A CWorkflowTaskParam whose parameters, defaults and parsing come from a Schema."""
from ikomia import core


class SchemaParam(core.CWorkflowTaskParam):
    """Values are kept as the strings Ikomia stores; `config()` parses them once into the typed config.

    Subclasses set `schema`. Legacy names are listed by get_values() because Ikomia's set_parameters()
    forwards only the keys that get_values() lists.
    """

    schema = None

    def __init__(self):
        core.CWorkflowTaskParam.__init__(self)
        self.values = self.schema.defaults()
        self._parsed = (None, None)  # (the values last parsed, their config): a task parses once a change

    def set_values(self, params):
        self.values = self.schema.update(self.values, params)

    def get_values(self):
        return self.schema.with_legacy(self.values)

    def config(self):
        """The typed config (read-only: made once for these values); a ConfigError names the parameter, what it
        expects and what it got."""
        values, config = self._parsed
        if values != self.values:
            config = self.schema.parse(self.values)
            self._parsed = (dict(self.values), config)
        return config
