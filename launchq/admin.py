"""Every model in Django's admin site, read-mostly where history must not change."""

from django.contrib import admin

from launchq import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(models.Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]


@admin.register(models.Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "resource", "current_version", "created_at"]
    list_filter = ["team", "resource"]
    readonly_fields = ["current_version", "created_at"]


@admin.register(models.ConfigVersion)
class ConfigVersionAdmin(admin.ModelAdmin):
    """Versions are history: shown, never edited."""

    list_display = ["queue", "number", "format", "created_by", "created_at"]
    list_filter = ["queue__team"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


class RunEventInline(admin.TabularInline):
    model = models.RunEvent
    extra = 0
    can_delete = False
    readonly_fields = ["state", "message", "at", "actor", "agent"]


@admin.register(models.Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "name", "queue", "state", "priority", "launched_by", "created_at"]
    list_filter = ["state", "queue__team", "queue"]
    search_fields = ["run_id", "name"]
    readonly_fields = [f.name for f in models.Run._meta.fields]
    inlines = [RunEventInline]


@admin.register(models.RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "state", "at", "actor", "agent"]


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]


@admin.register(models.Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "client", "last_seen_at", "reported_status", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_seen_at"]
    filter_horizontal = ["queues"]


@admin.register(models.IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    """Shown to look into a replayed launch; deleting one lets its key launch again."""

    list_display = ["key", "user", "run", "created_at", "expires_at"]
    search_fields = ["key", "run__run_id"]
    readonly_fields = ["user", "key", "fingerprint", "run", "created_at", "expires_at"]

    def has_add_permission(self, request):
        return False


@admin.register(models.RunFile)
class RunFileAdmin(admin.ModelAdmin):
    list_display = ["run", "name", "size", "uploaded_at"]
    readonly_fields = ["run", "name", "size", "uploaded_at"]
    exclude = ["content"]
